"""Output helpers: podman-style tables, ``--format json`` and Go-template-like formats.

Supported template syntax (the part of Go's text/template podman users write):
``{{.Field.Sub}}`` (field names match JSON keys case-insensitively, so ``.Store.GraphDriverName``
reads ``store.graphDriverName``), ``{{json .X}}``, ``{{upper .X}}``, ``{{lower .X}}``,
``{{len .X}}``, ``{{join .X ","}}``, ``{{truncate .X 12}}``, ``{{range .X}}...{{end}}``,
``{{if .X}}...{{else}}...{{end}}``, ``{{"text"}}``, and a leading ``table`` that prints a
header row. ``\\t`` and ``\\n`` in the format are tab and newline.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, Sequence

from ..errors import InvalidArgument
from ..lazyre import lazy
from ..units import human_duration

_ACTION = lazy(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=4, default=_json_default)


def _json_default(o: Any) -> Any:
    if hasattr(o, "as_dict"):
        return o.as_dict()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if isinstance(o, bytes):
        return o.decode("utf-8", "replace")
    return str(o)


def lookup(obj: Any, path: str) -> Any:
    """Resolve ``.A.B`` against dicts (case-insensitive) and objects."""
    if path == ".":
        return obj
    cur = obj
    for part in path.lstrip(".").split("."):
        if part == "":
            continue
        if isinstance(cur, dict):
            if part in cur:
                cur = cur[part]
                continue
            low = part.lower()
            for k in cur:
                if isinstance(k, str) and k.lower() == low:
                    cur = cur[k]
                    break
            else:
                raise InvalidArgument(f"template: can't evaluate field {part} in {_kind(cur)}")
        elif hasattr(cur, part):
            cur = getattr(cur, part)
        elif hasattr(cur, "as_dict"):
            cur = lookup(cur.as_dict(), part)
        else:
            raise InvalidArgument(f"template: can't evaluate field {part} in {_kind(cur)}")
    return cur


def _kind(v: Any) -> str:
    return "map" if isinstance(v, dict) else type(v).__name__


def _fmt_value(v: Any) -> str:
    if v is None:
        return "<no value>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(_fmt_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_fmt_value(x)}" for k, x in sorted(v.items())) + "]"
    return str(v)


def _split_args(expr: str) -> list[str]:
    return re.findall(r'"(?:[^"\\]|\\.)*"|\S+', expr)


def _eval_arg(tok: str, data: Any) -> Any:
    if tok.startswith('"'):
        return json.loads(tok)
    if tok.startswith("."):
        return lookup(data, tok)
    if re.fullmatch(r"-?\d+", tok):
        return int(tok)
    raise InvalidArgument(f"template: unexpected {tok!r}")


_FUNCS = {
    "json": lambda v: json.dumps(v, default=_json_default),
    "upper": lambda v: str(v).upper(),
    "lower": lambda v: str(v).lower(),
    "title": lambda v: str(v).title(),
    "len": lambda v: len(v),
    "join": lambda v, sep: sep.join(str(x) for x in v),
    "truncate": lambda v, n: str(v)[:n],
    "printf": lambda f, *a: _printf(f, *a),
}


def _printf(fmt: str, *args: Any) -> str:
    return re.sub(r"%v", "%s", fmt) % tuple(_fmt_value(a) if not isinstance(a, str) else a for a in args)


def _eval(expr: str, data: Any) -> Any:
    toks = _split_args(expr)
    if not toks:
        raise InvalidArgument("template: empty action")
    if toks[0] in _FUNCS:
        args = [_eval_arg(t, data) for t in toks[1:]]
        try:
            return _FUNCS[toks[0]](*args)
        except TypeError as exc:
            raise InvalidArgument(f"template: {toks[0]}: {exc}") from None
    if len(toks) != 1:
        raise InvalidArgument(f"template: function {toks[0]!r} not defined")
    return _eval_arg(toks[0], data)


def _parse(fmt: str) -> list:
    """Parse into a tree of ("text", s) / ("expr", e) / ("range", e, body) / ("if", e, then, else)."""
    pos = 0
    tokens: list[tuple[str, str]] = []
    for m in _ACTION.finditer(fmt):
        if m.start() > pos:
            tokens.append(("text", fmt[pos : m.start()]))
        tokens.append(("action", m.group(1)))
        pos = m.end()
    if pos < len(fmt):
        tokens.append(("text", fmt[pos:]))

    def block(i: int, stop: tuple[str, ...]) -> tuple[list, int, str | None]:
        out: list = []
        while i < len(tokens):
            kind, val = tokens[i]
            if kind == "text":
                out.append(("text", val))
                i += 1
                continue
            word = val.split(None, 1)[0] if val else ""
            if word in stop:
                return out, i, word
            if word == "range":
                body, i, end = block(i + 1, ("end",))
                if end != "end":
                    raise InvalidArgument("template: unexpected EOF in range")
                out.append(("range", val[5:].strip(), body))
                i += 1
            elif word == "if":
                then, i, end = block(i + 1, ("else", "end"))
                other: list = []
                if end == "else":
                    other, i, end = block(i + 1, ("end",))
                if end != "end":
                    raise InvalidArgument("template: unexpected EOF in if")
                out.append(("if", val[2:].strip(), then, other))
                i += 1
            elif word in ("end", "else"):
                raise InvalidArgument(f"template: unexpected {{{{{word}}}}}")
            else:
                out.append(("expr", val))
                i += 1
        return out, i, None

    tree, _, _ = block(0, ())
    return tree


def _render(tree: list, data: Any) -> str:
    parts = []
    for node in tree:
        if node[0] == "text":
            parts.append(node[1])
        elif node[0] == "expr":
            v = _eval(node[1], data)
            parts.append(v if isinstance(v, str) else _fmt_value(v))
        elif node[0] == "range":
            seq = _eval(node[1], data)
            items = seq.values() if isinstance(seq, dict) else (seq or [])
            for item in items:
                parts.append(_render(node[2], item))
        elif node[0] == "if":
            parts.append(_render(node[2] if _eval(node[1], data) else node[3], data))
    return "".join(parts)


class Template:
    """A compiled ``--format`` template."""

    def __init__(self, fmt: str) -> None:
        fmt = fmt.replace("\\t", "\t").replace("\\n", "\n")
        self.table = False
        if fmt.startswith("table"):
            self.table = True
            fmt = fmt[5:].lstrip(" ")
        self.source = fmt
        self.tree = _parse(fmt)

    def headers(self) -> str:
        """Header row for ``table`` formats: each field's last name, upper-cased."""

        def head(expr: str) -> str:
            toks = _split_args(expr)
            field = next((t for t in toks if t.startswith(".")), toks[-1] if toks else "")
            name = field.rsplit(".", 1)[-1] or field
            return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).upper()

        out = []
        for node in self.tree:
            out.append(node[1] if node[0] == "text" else head(node[1]) if node[0] == "expr" else "")
        return "".join(out)

    def render(self, data: Any) -> str:
        return _render(self.tree, data)


def render_many(fmt: str, items: Iterable[Any], *, noheading: bool = False) -> str:
    """Render *fmt* once per item (one line each); ``table`` aligns the columns and adds a
    header row (unless *noheading*, the ``--noheading`` of ls commands)."""
    tpl = Template(fmt)
    lines = [tpl.render(i) for i in items]
    if tpl.table:
        rows = ([] if noheading else [tpl.headers()]) + lines
        return align_tabs(rows)
    return "\n".join(lines)


def align_tabs(lines: Sequence[str], pad: int = 2) -> str:
    """Align tab-separated columns like Go's tabwriter (min width 0, padding *pad*)."""
    split = [line.split("\t") for line in lines]
    widths: list[int] = []
    for cells in split:
        for i, c in enumerate(cells[:-1]):
            if i >= len(widths):
                widths.append(0)
            widths[i] = max(widths[i], len(c))
    out = []
    for cells in split:
        parts = [c.ljust(widths[i] + pad) for i, c in enumerate(cells[:-1])]
        parts.append(cells[-1] if cells else "")
        out.append("".join(parts).rstrip())
    return "\n".join(out)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["\t".join(headers)] + ["\t".join("" if c is None else str(c) for c in r) for r in rows]
    return align_tabs(lines, pad=3)


def to_yaml(obj: Any) -> str:
    import yaml

    return yaml.safe_dump(json.loads(json.dumps(obj, default=_json_default)), sort_keys=False, default_flow_style=False)


def human_size(n: int | float | None) -> str:
    """Decimal units like podman/docker: ``4.27 MB``, ``1.1 GB``, ``512 B``."""
    if n is None:
        return "0 B"
    n = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            if unit == "B":
                return f"{int(n)} B"
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"





def time_ago(ts: float | None) -> str:
    import time

    if not ts:
        return ""
    return f"{human_duration(time.time() - ts)} ago"
