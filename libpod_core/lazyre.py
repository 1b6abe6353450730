"""Regular expressions compiled on first use.

``re.compile`` at module level runs at import, and every kpod command imports the modules
of its code path whether or not it parses anything: an image reference's grammar alone took
a few milliseconds to compile per command. ``lazy(pattern, flags)`` behaves like the compiled
pattern (``match``, ``fullmatch``, ``search``, ``sub``, ``pattern``...) and compiles it the
first time one of those is used.
"""

from __future__ import annotations

import re


class LazyPattern:
    __slots__ = ("_args", "_compiled")

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self._args = (pattern, flags)
        self._compiled: re.Pattern | None = None

    def compiled(self) -> re.Pattern:
        if self._compiled is None:
            self._compiled = re.compile(*self._args)
        return self._compiled

    def __getattr__(self, name: str):
        return getattr(self.compiled(), name)

    def __repr__(self) -> str:
        return f"lazy({self._args[0]!r})"


def lazy(pattern: str, flags: int = 0) -> LazyPattern:
    return LazyPattern(pattern, flags)
