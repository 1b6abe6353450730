#!/usr/bin/env python3
"""kpod against podman, side by side, on this machine: ``make bench`` or

    .venv/bin/python bench/run.py [--quick] [--only SCENARIO ...] [--keep] [--list]

Each scenario runs alternately on both engines (podman, then kpod, then kpod, then podman,
...) after one warm-up run of each, and reports median/min/max seconds per engine, the median
of the per-round ratios kpod/podman, and the peak RSS of the commands (wait4 rusage). Both
engines use throwaway stores under /var/tmp/kpod-bench (``$KPOD_BENCH_DIR``), their own CNI
configuration and bridge, and a docker-registry of their own on 127.0.0.1. Everything is
removed at the end (``--keep`` keeps it for a look).

A scenario kpod cannot run yet (missing command or option) is reported as "not supported";
no single scenario can fail the run. A full run (no --quick, no --only) writes
docs/performance.md and docs/performance.json; other runs write bench/results/latest.{md,json}.
Python standard library only.
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(1, REPO)

import engines as E  # noqa: E402
import images as I  # noqa: E402
from registry import Registry  # noqa: E402

BASE = os.path.abspath(os.environ.get("KPOD_BENCH_DIR", "/var/tmp/kpod-bench"))
T0 = time.time()


def log(msg: str) -> None:
    print(f"[{time.time() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


class StepFailed(Exception):
    def __init__(self, what: str, res: E.CmdResult):
        super().__init__(f"{what}: {res.first_error()}")
        self.what = what
        self.res = res

    @property
    def unsupported(self) -> bool:
        return self.res.unsupported()


def must(res: E.CmdResult, what: str) -> E.CmdResult:
    if not res.ok:
        raise StepFailed(what, res)
    return res


# --------------------------------------------------------------------------- context


class Ctx:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.quick = args.quick
        self.base = BASE
        self.cache = os.path.join(BASE, "cache")
        self.podman: E.Engine | None = None
        self.kpod: dict[str, E.Engine] = {}
        self.registry: Registry | None = None
        self.push_registry: Registry | None = None
        self.refs: dict[tuple[str, str, str], str] = {}  # (kind, store, what) -> reference to use
        self.large_info: dict = {}
        self.paths: dict[str, str] = {}
        self.counts = {
            "create": 20 if self.quick else 100,
            "ps": 100 if self.quick else 1000,
            "images": 50 if self.quick else 500,
            "rss": 2 if self.quick else 5,
        }

    def engines(self) -> list[E.Engine]:
        return ([self.podman] if self.podman else []) + list(self.kpod.values())

    # -- images in stores

    def ensure_image(self, eng: E.Engine, store: str, what: str) -> str:
        """Load the busybox or large image into *store* (docker-archive; if kpod cannot load
        yet, pull it from the bench registry). Returns the reference to use."""
        key = (eng.kind, store, what)
        if key in self.refs:
            return self.refs[key]
        archive, ref = (self.paths[what], I.BUSYBOX_REF if what == "busybox" else I.LARGE_REF)
        res = eng.run(store, "load", "-i", archive)
        if not res.ok:
            remote = f"{self.registry.host}/kpodbench/{what}:latest" if self.registry else None
            if remote is None:
                raise StepFailed(f"load {what}", res)
            res2 = eng.run(store, "pull", "--tls-verify=false", remote)
            if not res2.ok:
                raise StepFailed(f"load {what}", res)
            ref = remote
        self.refs[key] = ref
        return ref

    def forget_store(self, eng: E.Engine, store: str) -> None:
        for k in [k for k in self.refs if k[0] == eng.kind and k[1] == store]:
            del self.refs[k]

    def reset_store(self, eng: E.Engine, store: str) -> None:
        """Remove everything in *store*: podman system reset / kpod rm -fa, then the files."""
        root, runroot = eng.store(store)
        if os.path.exists(root) or os.path.exists(runroot):
            if eng.kind == "podman":
                eng.run(store, "system", "reset", "-f", timeout=600)
            else:
                eng.run(store, "pod", "rm", "-fa", timeout=600)
                eng.run(store, "rm", "-fa", timeout=900)
            E.kill_leftovers(os.path.join(eng.home, store), use_marker=False)
            E.wipe(os.path.join(eng.home, store), self.base)
        self.forget_store(eng, store)

    def empty_images(self, eng: E.Engine, store: str) -> None:
        res = eng.run(store, "rmi", "-a", "-f", timeout=300)
        if not res.ok:
            self.reset_store(eng, store)
        self.forget_store(eng, store)

    def rm_force(self, eng: E.Engine, store: str, names: list[str]) -> E.CmdResult:
        if eng.kind == "podman":
            return eng.run(store, "rm", "-f", "-t", "0", *names)
        res = eng.run(store, "rm", "-f", *names)
        return res


# --------------------------------------------------------------------------- scenarios


class Scenario:
    key = ""
    title = ""
    goal = "—"
    goal_ratio: float | None = None
    goal_note = ""
    kpod_runtimes: tuple[str, ...] = ("runc",)
    store = "main"
    reps = 5
    quick_reps = 2
    timeout = 600
    warmup = True  # heavy scenarios skip it: their first round also tells whether kpod can do it
    #: write back dirty pages (sync, untimed) before each timed run: a disk-heavy run must not
    #: pay for the previous run's extraction or removal
    settle = False
    description = ""
    needs = ("busybox",)

    def label(self, ctx: Ctx) -> str:
        return self.title

    def prepare(self, ctx: Ctx, eng: E.Engine) -> None:
        for what in self.needs:
            ctx.ensure_image(eng, self.store, what)

    def before(self, ctx: Ctx, eng: E.Engine, i: int) -> None:
        pass

    def steps(self, ctx: Ctx, eng: E.Engine, i: int, warm: bool) -> list[list[str]]:
        raise NotImplementedError

    def check(self, ctx: Ctx, eng: E.Engine, results: list[E.CmdResult]) -> str | None:
        return None

    def after(self, ctx: Ctx, eng: E.Engine, i: int) -> None:
        pass

    def finish(self, ctx: Ctx, eng: E.Engine) -> None:
        pass

    def bb(self, ctx: Ctx, eng: E.Engine) -> str:
        return ctx.refs[(eng.kind, self.store, "busybox")]


class Version(Scenario):
    key, title = "version", "`version`"
    goal, goal_ratio = "no slower (issue 2)", 1.0
    reps, quick_reps = 7, 2
    needs = ()
    description = "`ENGINE [global flags] version`: startup of the CLI and version output."

    def steps(self, ctx, eng, i, warm):
        return [["version"]]


class Help(Scenario):
    key, title = "help", "`--help`"
    goal, goal_ratio = "no slower (issue 2)", 1.0
    reps, quick_reps = 7, 2
    needs = ()
    description = "`ENGINE [global flags] --help`: startup of the CLI and the command list."

    def steps(self, ctx, eng, i, warm):
        return [["--help"]]


class RunNone(Scenario):
    key, title = "run-none", "`run --rm --network none IMG true`"
    goal, goal_ratio = "≤ 0.6× (issue 5; kpod on runc)", 0.6
    kpod_runtimes = ("runc", "crun")
    description = (
        "`run --rm --network none localhost/kpodbench/busybox true` in the main store; podman on "
        "runc, kpod on runc and on crun (each compared with the same round's podman)."
    )

    def steps(self, ctx, eng, i, warm):
        return [["run", "--rm", "--network", "none", self.bb(ctx, eng), "true"]]


class RunBridge(Scenario):
    key, title = "run-bridge", "`run --rm --network bridge IMG true`"
    goal, goal_ratio = "≤ 0.6× (issue 6; kpod on runc)", 0.6
    kpod_runtimes = ("runc", "crun")
    description = (
        "`run --rm --network bridge localhost/kpodbench/busybox true`: the default network of each "
        "engine, a CNI bridge conflist of the bench's own (bridge, host-local IPAM with its own "
        "data dir, portmap, firewall, tuning) on a free /24."
    )

    def steps(self, ctx, eng, i, warm):
        return [["run", "--rm", "--network", "bridge", self.bb(ctx, eng), "true"]]


class PodCreateStartRun(Scenario):
    key, title = "pod", "`pod create` + `pod start` + `run --rm --pod`"
    goal, goal_ratio = "no slower (issue 6)", 1.0
    description = (
        "Three commands, timed together: `pod create --name N` (default infra, default bridge network), "
        "`pod start N`, `run --rm --pod N IMG true`; then `pod rm -f N` (untimed)."
    )

    def steps(self, ctx, eng, i, warm):
        n = f"kpodbench-pod-{'w' if warm else i}"
        return [["pod", "create", "--name", n], ["pod", "start", n], ["run", "--rm", "--pod", n, self.bb(ctx, eng), "true"]]

    def after(self, ctx, eng, i):
        eng.run(self.store, "pod", "rm", "-f", f"kpodbench-pod-{'w' if i < 0 else i}")


class StopIgnoringTerm(Scenario):
    key, title = "stop", "`stop -t 1` (SIGTERM ignored)"
    goal = "— (reported)"
    description = (
        "Untimed: `run -d --name N --network none IMG sh -c \"trap '' TERM; sleep 1000\"`. "
        "Timed: `stop -t 1 N` (SIGTERM, 1 s grace, SIGKILL). Untimed: `rm -f N`."
    )

    def name(self, i):
        return f"kpodbench-stop-{'w' if i < 0 else i}"

    def before(self, ctx, eng, i):
        must(
            eng.run(self.store, "run", "-d", "--name", self.name(i), "--network", "none", self.bb(ctx, eng),
                    "sh", "-c", "trap '' TERM; sleep 1000"),
            "run -d",
        )

    def steps(self, ctx, eng, i, warm):
        return [["stop", "-t", "1", self.name(-1 if warm else i)]]

    def after(self, ctx, eng, i):
        ctx.rm_force(eng, self.store, [self.name(i)])


class Create100(Scenario):
    key, title = "create", "`create` × 100"
    goal, goal_ratio = "no slower (issue 5)", 1.0
    reps, quick_reps = 3, 1

    def label(self, ctx):
        return f"`create` × {ctx.counts['create']}"

    @property
    def description(self):
        return (
            "N sequential `create IMG true` commands (N = 100; 20 with --quick) timed together in the "
            "main store; `rm -fa` afterwards (untimed). Peak RSS is the largest of the N commands."
        )

    def steps(self, ctx, eng, i, warm):
        n = 5 if warm else ctx.counts["create"]
        return [["create", self.bb(ctx, eng), "true"] for _ in range(n)]

    def after(self, ctx, eng, i):
        if eng.kind == "podman":
            eng.run(self.store, "rm", "-fa", "-t", "0", timeout=600)
        else:
            eng.run(self.store, "rm", "-fa", timeout=600)


class Ps1000(Scenario):
    key, title = "ps", "`ps -a` at 1,000 containers"
    goal, goal_ratio = "≤ 0.5× (issue 5)", 0.5
    store = "ps"
    reps, quick_reps = 5, 2
    populate_secs: dict[str, float] = {}
    fill_limit = 600  # seconds per engine; beyond that the scenario is reported as failed

    def label(self, ctx):
        return f"`ps -a` at {ctx.counts['ps']:,} containers"

    @property
    def description(self):
        return (
            "A separate store filled (untimed, one create after the other) with N created containers "
            "(`create IMG true`; N = 1,000, 100 with --quick), then `ps -a` timed. The fill time is "
            "reported in the JSON and the notes. The store is reset afterwards."
        )

    def prepare(self, ctx, eng):
        super().prepare(ctx, eng)
        n = ctx.counts["ps"]
        bb = self.bb(ctx, eng)
        t0 = time.perf_counter()
        failures: list[E.CmdResult] = []

        def one(_):
            r = eng.run(self.store, "create", bb, "true")
            if not r.ok:
                r = eng.run(self.store, "create", bb, "true")  # one retry, sequentially
                if not r.ok:
                    failures.append(r)
            return r.ok

        first = eng.run(self.store, "create", bb, "true")
        must(first, "create")
        made = 1
        for j in range(n - 1):
            if time.perf_counter() - t0 > self.fill_limit and not ctx.quick:
                raise StepFailed(f"fill: only {made} of {n} containers created in {self.fill_limit} s",
                                 E.CmdResult([], 1, 0, 0, "", "too slow to fill"))
            made += one(j)
        self.populate_secs[eng.kind] = time.perf_counter() - t0
        if failures:
            raise StepFailed(f"create ({len(failures)} of {n} failed)", failures[0])
        log(f"  {eng.kind}: {n} containers created in {self.populate_secs[eng.kind]:.1f} s")

    def steps(self, ctx, eng, i, warm):
        return [["ps", "-a"]]

    def check(self, ctx, eng, results):
        lines = len([l for l in results[0].stdout.splitlines() if l.strip()])
        if lines < ctx.counts["ps"]:
            return f"output had {lines} lines for {ctx.counts['ps']} containers"
        return None

    def finish(self, ctx, eng):
        ctx.reset_store(eng, self.store)


class Images500(Scenario):
    key, title = "images", "`images` at 500 images"
    goal, goal_ratio = "no slower (issue 3)", 1.0
    store = "images"
    reps, quick_reps = 3, 1
    needs = ()
    load_secs: dict[str, float] = {}

    def label(self, ctx):
        return f"`images` at {ctx.counts['images']} images"

    @property
    def description(self):
        return (
            "A separate store holding N distinct images (N = 500, 50 with --quick): each the shared "
            "busybox layer plus one tiny layer and a config of its own, named "
            "localhost/kpodbench/manyNNNN:latest, loaded (untimed) from one docker-archive. Then "
            "`images` timed. (500 tags of one image, or 500 images sharing their top layer, make podman "
            "4.3 take ~70 s per `images`, so every image has its own top layer, as real images do.)"
        )

    def prepare(self, ctx, eng):
        t0 = time.perf_counter()
        res = eng.run(self.store, "load", "-i", ctx.paths["many"], timeout=1200)
        must(res, "load")
        self.load_secs[eng.kind] = time.perf_counter() - t0
        log(f"  {eng.kind}: {ctx.counts['images']} images loaded in {self.load_secs[eng.kind]:.1f} s")

    def steps(self, ctx, eng, i, warm):
        return [["images"]]

    def check(self, ctx, eng, results):
        lines = len([l for l in results[0].stdout.splitlines() if "kpodbench/many" in l])
        if lines < ctx.counts["images"]:
            return f"output listed {lines} of {ctx.counts['images']} images"
        return None

    def finish(self, ctx, eng):
        ctx.reset_store(eng, self.store)


class FreshStores(Scenario):
    """Each round writes the large image into a new, empty store; the stores are removed
    when the scenario ends, not between rounds.

    This machine's ext4 has no journal, and without one the kernel will not reuse an inode
    freed less than 60 s before: every new inode's search re-checks each such inode in its
    group (recently_deleted() in fs/ext4/ialloc.c). Emptying the store between rounds freed
    8,000 inodes next to where the next round creates 8,000, and perf put 35-45% of that
    round's samples in that check (pull: kpod 3.0 s instead of 1.1-1.3 s, podman 4.5 s
    instead of 2.6-3.3 s). That cost belongs to the bench's clean-up, not to either engine.
    """

    settle = True
    reps, quick_reps = 3, 1
    warmup = False
    needs = ()
    store = "xfer"

    def before(self, ctx, eng, i):
        self.store = f"{self.key}-{i}"
        ctx.reset_store(eng, self.store)  # (a leftover of an interrupted run)

    def finish(self, ctx, eng):
        for name in eng.stores():
            if name.startswith(f"{self.key}-"):
                ctx.reset_store(eng, name)


class Load(FreshStores):
    key, title = "load", "`load` of the large image"
    goal, goal_ratio = "no slower (issue 3)", 1.0
    description = (
        "`load -i large.tar`: a docker-archive with gzip layers (busybox + the Python stdlib layer) "
        "into a new, empty store in each round; the stores are removed after the last round "
        "(untimed; see the set-up notes on removals)."
    )

    def steps(self, ctx, eng, i, warm):
        return [["load", "-i", ctx.paths["large"]]]


class Save(Scenario):
    key, title = "save", "`save` of the large image"
    goal = "— (reported)"
    store = "xfer"
    settle = True
    reps, quick_reps = 3, 1
    warmup = False
    needs = ("large",)
    description = (
        "`save -o OUT.tar IMG` (each engine's default format, docker-archive) of the large image "
        "loaded beforehand (untimed); OUT.tar removed after each run."
    )

    sizes: dict[str, int] = {}

    def out(self, ctx, eng):
        return os.path.join(ctx.base, "out", f"{eng.kind}-save.tar")

    def steps(self, ctx, eng, i, warm):
        os.makedirs(os.path.dirname(self.out(ctx, eng)), exist_ok=True)
        return [["save", "-o", self.out(ctx, eng), ctx.refs[(eng.kind, self.store, "large")]]]

    def after(self, ctx, eng, i):
        try:
            self.sizes[eng.kind] = os.path.getsize(self.out(ctx, eng))
            os.unlink(self.out(ctx, eng))
        except FileNotFoundError:
            pass


class Push(Scenario):
    key, title = "push", "`push` of the large image"
    goal, goal_ratio = "no slower (issue 4)", 1.0
    store = "xfer"
    settle = True
    reps, quick_reps = 3, 1
    warmup = False
    needs = ("large",)
    description = (
        "`push --tls-verify=false IMG 127.0.0.1:PORT/kpodbench/push:latest` of the large image "
        "(loaded beforehand, untimed) to a registry started empty, on a new port, for every run "
        "(so neither engine can skip or mount blobs); the engines compress the layers themselves."
    )

    def before(self, ctx, eng, i):
        ctx.push_registry = Registry(os.path.join(ctx.base, "registry-push")).start(fresh=True)

    def steps(self, ctx, eng, i, warm):
        dest = f"{ctx.push_registry.host}/kpodbench/push:latest"
        return [["push", "--tls-verify=false", ctx.refs[(eng.kind, self.store, "large")], dest]]

    def after(self, ctx, eng, i):
        if ctx.push_registry:
            ctx.push_registry.stop(remove=True)
            ctx.push_registry = None

    def finish(self, ctx, eng):
        ctx.empty_images(eng, self.store)


class Pull(FreshStores):
    key, title = "pull", "`pull` of the large image"
    goal, goal_ratio = "≤ 0.25× (issue 4)", 0.25
    description = (
        "`pull --tls-verify=false 127.0.0.1:PORT/kpodbench/large:latest` (gzip layers, pushed there "
        "by skopeo) into a new, empty store in each round; the stores are removed after the last "
        "round (untimed; see the set-up notes on removals)."
    )

    def steps(self, ctx, eng, i, warm):
        return [["pull", "--tls-verify=false", f"{ctx.registry.host}/kpodbench/large:latest"]]


SCENARIOS: list[Scenario] = [
    Version(), Help(), RunNone(), RunBridge(), PodCreateStartRun(), StopIgnoringTerm(), Create100(),
    Ps1000(), Images500(), Load(), Save(), Push(), Pull(),
]
EXTRA_KEYS = ("rss", "importtime", "floors")


# --------------------------------------------------------------------------- measuring


def summarize(values: list[float]) -> dict:
    if not values:
        return {}
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def run_rep(sc: Scenario, ctx: Ctx, eng: E.Engine, i: int, warm: bool) -> tuple[float, int, str | None]:
    """One timed repetition: untimed before(), timed steps, untimed after(). Raises StepFailed."""
    sc.before(ctx, eng, i)
    if sc.settle:
        os.sync()
    results = []
    try:
        for args in sc.steps(ctx, eng, i, warm):
            res = eng.run(sc.store, *args, timeout=sc.timeout)
            results.append(res)
            must(res, " ".join(args[:2]) if not args[0].startswith("-") else args[0])
    finally:
        try:
            sc.after(ctx, eng, i)
        except StepFailed as e:
            log(f"  ({eng.label}: cleanup after run failed: {e})")
    warn = sc.check(ctx, eng, results)
    return sum(r.secs for r in results), max((r.maxrss_kb for r in results), default=0), warn


def measure(sc: Scenario, ctx: Ctx) -> dict:
    reps = sc.quick_reps if ctx.quick else sc.reps
    variants: list[E.Engine] = []
    if ctx.podman:
        variants.append(ctx.podman)
    variants += [ctx.kpod[rt] for rt in sc.kpod_runtimes if rt in ctx.kpod]
    st: dict[str, dict] = {v.label: {"engine": v.kind, "runtime": v.runtime, "status": "ok", "note": "",
                                     "times": {}, "rss_kb": {}, "warnings": []} for v in variants}
    log(f"== {sc.key}: {sc.label(ctx)} ({reps} rounds)")
    prepared: dict[str, str | None] = {}
    for v in variants:
        s = st[v.label]
        if v.kind not in prepared:
            try:
                sc.prepare(ctx, v)
                prepared[v.kind] = None
            except StepFailed as e:
                prepared[v.kind] = ("not supported" if e.unsupported else "failed", f"needs {e}")
            except Exception as e:  # noqa: BLE001 - one scenario never stops the run
                prepared[v.kind] = ("failed", f"prepare: {type(e).__name__}: {e}")
        if prepared[v.kind]:
            s["status"], s["note"] = prepared[v.kind]
            log(f"  {v.label}: {s['status']} ({s['note']})")
    active = [v for v in variants if st[v.label]["status"] == "ok"]

    def attempt(v: E.Engine, i: int, warm: bool) -> bool:
        s = st[v.label]
        try:
            secs, rss, warn = run_rep(sc, ctx, v, i, warm)
        except StepFailed as e:
            s["status"] = "not supported" if (e.unsupported and not s["times"]) else "failed"
            s["note"] = str(e)
            log(f"  {v.label}: {s['status']}: {e}")
            return False
        except Exception as e:  # noqa: BLE001
            s["status"], s["note"] = "failed", f"{type(e).__name__}: {e}"
            log(f"  {v.label}: failed: {s['note']}")
            traceback.print_exc()
            return False
        if warn and warn not in s["warnings"]:
            s["warnings"].append(warn)
        if not warm:
            s["times"][i] = secs
            s["rss_kb"][i] = rss
        log(f"  {v.label} {'warm-up' if warm else f'round {i + 1}'}: {secs:.3f} s, peak RSS {rss / 1024:.0f} MiB"
            + (f" [{warn}]" if warn else ""))
        return True

    if sc.warmup:
        active = [v for v in active if attempt(v, -1, True)]
    for i in range(reps):
        order = active if i % 2 == 0 else active[::-1]
        for v in order:
            if st[v.label]["status"] == "ok":
                attempt(v, i, False)
    for v in variants:
        if v.kind in prepared and prepared[v.kind] is None:
            try:
                sc.finish(ctx, v)
            except Exception as e:  # noqa: BLE001
                log(f"  {v.label}: finish failed: {e}")
            prepared[v.kind] = "done"
    out = {"key": sc.key, "title": sc.label(ctx), "goal": sc.goal, "goal_ratio": sc.goal_ratio,
           "description": sc.description, "rounds": reps, "engines": {}, "ratios": {}}
    pod = st.get(ctx.podman.label) if ctx.podman else None
    for label, s in st.items():
        e = dict(s)
        e["times"] = [s["times"][k] for k in sorted(s["times"])]
        e["rss_kb"] = [s["rss_kb"][k] for k in sorted(s["rss_kb"])]
        e["summary"] = summarize(e["times"])
        e["rss_summary"] = summarize(e["rss_kb"])
        out["engines"][label] = e
        if s["engine"] == "kpod" and pod:
            pairs = [s["times"][k] / pod["times"][k] for k in s["times"] if k in pod["times"] and pod["times"][k] > 0]
            if pairs:
                out["ratios"][label] = {"median": statistics.median(pairs), "pairs": pairs}
    if isinstance(sc, Ps1000):
        out["fill_secs"] = dict(sc.populate_secs)
    if isinstance(sc, Images500):
        out["load_secs"] = dict(sc.load_secs)
    if isinstance(sc, Save):
        out["output_bytes"] = dict(sc.sizes)
    return out


def measure_rss(ctx: Ctx) -> dict:
    """Resident memory per running detached container: everything the engine leaves running
    on the host for K detached `sleep` containers (conmon, and anything else), not counting
    the container's own processes."""
    k = ctx.counts["rss"]
    out = {"key": "rss", "title": f"resident memory per detached container ({k} containers)",
           "goal": "conmon only (issue 5)", "description": "", "engines": {}}
    out["description"] = (
        f"Untimed: `run -d --network none --name N IMG sleep 1000` × {k} in the main store; after 1 s, every "
        "host process the engine left behind (command line under the bench directory or carrying the "
        "bench's environment marker, outside the containers' PID namespaces) is summed: RSS and PSS "
        f"from /proc, divided by {k}. Then `rm -f` of the containers."
    )
    log(f"== rss: {out['title']}")
    for eng in [ctx.podman] + [ctx.kpod.get("runc")]:
        if eng is None:
            continue
        e = {"engine": eng.kind, "runtime": eng.runtime, "status": "ok", "note": ""}
        out["engines"][eng.label] = e
        names = [f"kpodbench-rss-{j}" for j in range(k)]
        try:
            bb = ctx.ensure_image(eng, "main", "busybox")
            before = set(E.engine_processes(ctx.base))
            for n in names:
                must(eng.run("main", "run", "-d", "--name", n, "--network", "none", bb, "sleep", "1000"), "run -d")
            time.sleep(1.0)
            procs = [p for pid, p in E.engine_processes(ctx.base).items() if pid not in before and not p["workload"]]
            rows = []
            for p in procs:
                rss, pss = E.mem_of(p["pid"])
                rows.append({**p, "rss_kb": rss, "pss_kb": pss})
            e["processes"] = rows
            e["rss_kb_total"] = sum(r["rss_kb"] for r in rows)
            e["pss_kb_total"] = sum(r["pss_kb"] for r in rows)
            e["rss_kb_per_container"] = e["rss_kb_total"] / k
            e["pss_kb_per_container"] = e["pss_kb_total"] / k
            comms: dict[str, int] = {}
            for r in rows:
                comms[r["comm"]] = comms.get(r["comm"], 0) + 1
            e["resident"] = comms
            e["conmon_only"] = set(comms) <= {"conmon"}
            log(f"  {eng.label}: {e['rss_kb_per_container'] / 1024:.2f} MiB RSS, {e['pss_kb_per_container'] / 1024:.2f} MiB PSS"
                f" per container; resident: {comms}")
        except StepFailed as ex:
            e["status"] = "not supported" if ex.unsupported else "failed"
            e["note"] = str(ex)
            log(f"  {eng.label}: {e['status']}: {ex}")
        except Exception as ex:  # noqa: BLE001
            e["status"], e["note"] = "failed", f"{type(ex).__name__}: {ex}"
            log(f"  {eng.label}: failed: {e['note']}")
        finally:
            ctx.rm_force(eng, "main", names)
    pod = out["engines"].get(ctx.podman.label) if ctx.podman else None
    kp = out["engines"].get(ctx.kpod["runc"].label) if "runc" in ctx.kpod else None
    if pod and kp and pod.get("rss_kb_per_container") and kp.get("rss_kb_per_container"):
        out["ratio_rss"] = kp["rss_kb_per_container"] / pod["rss_kb_per_container"]
    return out


IMPORT_RE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")
BUDGET_FORBIDDEN = ("stevedore", "yaml", "pluggy", "kpod_runtime", "kpod_storage", "kpod_net")


def parse_importtime(stderr: str) -> list[dict]:
    rows = []
    for line in stderr.splitlines():
        m = IMPORT_RE.match(line)
        if m:
            rows.append({"self_us": int(m.group(1)), "cum_us": int(m.group(2)),
                         "depth": (len(m.group(3)) - 1) // 2, "module": m.group(4)})
    return rows


def measure_importtime(ctx: Ctx) -> dict:
    """`python -X importtime` of kpod --help, version and run: which modules cost what."""
    out = {"key": "importtime", "commands": {}}
    eng = ctx.kpod.get("runc")
    if eng is None:
        return out
    log("== importtime: kpod --help, version, run")
    py = kpod_python(eng.exe[0])
    it = E.Engine("kpod", [py, "-X", "importtime", eng.exe[0]], eng.runtime, eng.home, eng.env)
    cmds = {"kpod --help": ["--help"], "kpod version": ["version"]}
    try:
        bb = ctx.ensure_image(eng, "main", "busybox")
        cmds["kpod run"] = ["run", "--rm", "--network", "none", bb, "true"]
    except StepFailed as e:
        out["commands"]["kpod run"] = {"status": "not supported" if e.unsupported else "failed", "note": str(e)}
    for name, args in cmds.items():
        runs = []
        for _ in range(1 if ctx.quick else 3):
            res = it.run("main", *args)
            if not res.ok:
                st = "not supported" if res.unsupported() else "failed"
                out["commands"][name] = {"status": st, "note": res.first_error()}
                break
            rows = parse_importtime(res.stderr)
            runs.append((sum(r["self_us"] for r in rows), rows, res.secs))
        else:
            runs.sort(key=lambda r: r[0])
            total, rows, secs = runs[len(runs) // 2]
            top = [r for r in rows if r["depth"] == 0]
            out["commands"][name] = {
                "status": "ok",
                "total_import_ms": total / 1000,
                "wall_s_with_importtime": secs,
                "modules": len(rows),
                "top_cumulative": sorted(top, key=lambda r: -r["cum_us"])[:12],
                "top_self": sorted(rows, key=lambda r: -r["self_us"])[:10],
                "forbidden_loaded": sorted({r["module"] for r in rows if r["module"].split(".")[0] in BUDGET_FORBIDDEN}),
            }
            log(f"  {name}: {total / 1000:.1f} ms of imports in {len(rows)} modules")
    return out


CNI_FLOOR_NETNS = "kpodbench-floor"
CNI_FLOOR_BRIDGE = "kbfloor0"


def _cni_call(command: str, plugin: dict, name: str, prev: dict | None, netns: str) -> dict:
    """One CNI plugin call as the spec describes it (what libcni does for each plugin)."""
    conf = dict(plugin, cniVersion="0.4.0", name=name)
    if prev is not None:
        conf["prevResult"] = prev
    if plugin.get("capabilities", {}).get("portMappings"):
        conf["runtimeConfig"] = {"portMappings": []}
    env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID="kpodbench-floor", CNI_NETNS=netns,
               CNI_IFNAME="eth0", CNI_PATH="/usr/lib/cni")
    r = subprocess.run([os.path.join("/usr/lib/cni", plugin["type"])], input=json.dumps(conf).encode(),
                       capture_output=True, env=env, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"CNI {plugin['type']} {command}: {(r.stdout or r.stderr).decode(errors='replace')[:200]}")
    return json.loads(r.stdout) if command == "ADD" and r.stdout.strip() else (prev or {})


def cni_floor(fl: str, out: dict) -> None:
    """ADD then DEL of the bench's network configuration (bridge, host-local, portmap,
    firewall, tuning: every plugin, as libcni runs a list) on a new network namespace, with
    the real plugins and nothing else: what the network costs any engine using CNI."""
    if not os.path.isdir("/usr/lib/cni"):
        return
    subnet = E.free_subnets(1)[0]
    conf = E.conflist("kpodbench-floor", CNI_FLOOR_BRIDGE, subnet, os.path.join(fl, "cni-ipam"))
    netns = f"/run/netns/{CNI_FLOOR_NETNS}"
    adds, dels = [], []
    try:
        for i in range(6):
            subprocess.run(["ip", "netns", "add", CNI_FLOOR_NETNS], check=True, capture_output=True)
            try:
                t0 = time.perf_counter()
                result = None
                for plugin in conf["plugins"]:
                    result = _cni_call("ADD", plugin, conf["name"], result, netns)
                t1 = time.perf_counter()
                for plugin in reversed(conf["plugins"]):
                    _cni_call("DEL", plugin, conf["name"], result, netns)
                t2 = time.perf_counter()
            finally:
                subprocess.run(["ip", "netns", "del", CNI_FLOOR_NETNS], capture_output=True)
            if i:  # the first is a warm-up
                adds.append(t1 - t0)
                dels.append(t2 - t1)
        for what, vals in (("CNI ADD (the bench network's plugins alone)", adds),
                           ("CNI DEL (the bench network's plugins alone)", dels)):
            out[what] = {"secs": statistics.median(vals), "ok": True, "error": ""}
            log(f"  {what}: {out[what]['secs']:.3f} s (median of {len(vals)})")
    except (OSError, RuntimeError, subprocess.SubprocessError, ValueError) as e:
        out["CNI ADD + DEL"] = {"secs": 0, "ok": False, "error": str(e)}
        log(f"  CNI floor failed: {e}")
    finally:
        subprocess.run(["ip", "netns", "del", CNI_FLOOR_NETNS], capture_output=True)
        subprocess.run(["ip", "link", "del", CNI_FLOOR_BRIDGE], capture_output=True)


def measure_floors(ctx: Ctx) -> dict:
    """What the machine and the low-level tools can do without either engine (one run each)."""
    log("== floors: runc/crun alone, inflate, extract, CNI, skopeo")
    out: dict[str, dict] = {}

    def timed(name: str, argv: list[str], shell: bool = False, quiet: bool = False, **kw) -> None:
        t0 = time.perf_counter()
        try:
            r = subprocess.run(argv, shell=shell, capture_output=True, timeout=600, **kw)
            ok = r.returncode == 0
            err = r.stderr.decode(errors="replace").strip().splitlines()[-1:] if not ok else []
        except (OSError, subprocess.TimeoutExpired) as e:
            ok, err = False, [str(e)]
        out[name] = {"secs": time.perf_counter() - t0, "ok": ok, "error": err[0] if err else ""}
        if not quiet or not ok:
            log(f"  {name}: {out[name]['secs']:.3f} s" + ("" if ok else f" (failed: {out[name]['error']})"))

    fl = os.path.join(ctx.base, "floors")
    E.wipe(fl, ctx.base)
    os.makedirs(fl)

    def median_of(name: str, argv, n: int = 5, **kw) -> None:
        timed(name, argv, quiet=True, **kw)  # warm-up
        times = []
        for _ in range(n):
            timed(name, argv, quiet=True, **kw)
            times.append(out[name]["secs"])
        out[name]["secs"] = statistics.median(times)
        log(f"  {name}: {out[name]['secs']:.3f} s (median of {n})")

    try:
        kpy = kpod_python(ctx.args.kpod)
        median_of("python -c pass (kpod's interpreter)", [kpy, "-c", "pass"])
        median_of("python -c 'import click'", [kpy, "-c", "import click"])
        # runc / crun running `true` in a busybox bundle (new namespaces incl. network, no cgroup limits)
        bundle = os.path.join(fl, "bundle")
        os.makedirs(os.path.join(bundle, "rootfs"))
        subprocess.run(["tar", "-xf", I.busybox_layer(ctx.cache)[0], "-C", os.path.join(bundle, "rootfs")], check=True)
        subprocess.run(["runc", "spec", "-b", bundle], check=True)
        with open(os.path.join(bundle, "config.json")) as f:
            spec = json.load(f)
        spec["process"]["args"] = ["true"]
        spec["process"]["terminal"] = False
        spec["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(spec, f)
        for rt in ("runc", "crun"):
            state = os.path.join(fl, f"{rt}-state")
            os.makedirs(state)
            cmd = f"{rt} --root {state} run -b {bundle} kpodbench-floor-{rt} </dev/null"
            if rt == "crun":  # crun 1.8 refuses hybrid cgroups: hide the unified hierarchy (issue 5)
                cmd = ("unshare -m sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; " + cmd + "'")
            median_of(f"{rt} run true", cmd, shell=True)
        gz = ctx.large_info["gz"]
        os.sync()
        timed("zcat large layer > /dev/null", f"zcat {gz} > /dev/null", shell=True)
        ex = os.path.join(fl, "extract")
        os.makedirs(ex)
        os.sync()
        timed("tar -x large layer (uncompressed)", ["tar", "-xf", ctx.large_info["raw"], "-C", ex])
        t0 = time.perf_counter()
        h = hashlib.sha256()
        d = zlib.decompressobj(31)
        with open(gz, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(d.decompress(chunk))
        out["python zlib inflate + sha256"] = {"secs": time.perf_counter() - t0, "ok": True, "error": ""}
        log(f"  python zlib inflate + sha256: {out['python zlib inflate + sha256']['secs']:.3f} s")
        cni_floor(fl, out)
        if ctx.registry:
            timed("skopeo copy docker:// → dir:", ["skopeo", "copy", "--src-tls-verify=false",
                  f"docker://{ctx.registry.host}/kpodbench/large:latest", f"dir:{os.path.join(fl, 'skopeo-dir')}"])
    except Exception as e:  # noqa: BLE001
        out["error"] = {"secs": 0, "ok": False, "error": f"{type(e).__name__}: {e}"}
        log(f"  floors failed: {e}")
    finally:
        E.wipe(fl, ctx.base)
    return {"key": "floors", "tools": out}


# --------------------------------------------------------------------------- environment


def kpod_python(kpod_exe: str) -> str:
    try:
        with open(kpod_exe, "rb") as f:
            first = f.readline().decode().strip()
        if first.startswith("#!") and "python" in first:
            return first[2:].strip().split()[0]
    except OSError:
        pass
    return sys.executable


def first_line(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        return (r.stdout or r.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "not installed"


def machine_info(ctx: Ctx) -> dict:
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1])
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    cg = "v2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else (
        "v1 (hybrid)" if os.path.isdir("/sys/fs/cgroup/unified") else "v1")
    kv = "?"
    if ctx.kpod:
        eng = next(iter(ctx.kpod.values()))
        r = E.run_cmd(eng.exe + ["version", "--format", "json"], env=eng.env, timeout=60)
        try:
            kv = json.loads(r.stdout)["Client"]["Version"]
        except (ValueError, KeyError):
            kv = first_line(eng.exe + ["--version"])
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "memory_gib": round(mem / 1024 / 1024, 1),
        "cpu": cpu,
        "kernel": platform.release(),
        "cgroups": cg,
        "os": first_line(["sh", "-c", ". /etc/os-release; echo $PRETTY_NAME"]),
        "versions": {
            "kpod": kv,
            "podman": first_line(["podman", "--version"]),
            "runc": first_line(["runc", "--version"]),
            "crun": first_line(["crun", "--version"]),
            "conmon": first_line(["conmon", "--version"]),
            "skopeo": first_line(["skopeo", "--version"]),
            "docker-registry": first_line(["docker-registry", "--version"]),
            "python (kpod)": first_line([kpod_python(ctx.args.kpod), "--version"]),
            "CNI plugins": first_line(["dpkg-query", "-W", "-f=${Version}", "containernetworking-plugins"]),
        },
    }


def setup(ctx: Ctx) -> None:
    os.makedirs(ctx.cache, exist_ok=True)
    subnets = E.free_subnets(2)
    if shutil.which("podman") and not ctx.args.no_podman:
        ctx.podman = E.setup_podman(os.path.join(BASE, "podman"), subnets[0])
    else:
        log("podman left out (--no-podman)" if ctx.args.no_podman else
            "podman not found: podman columns stay empty (make bench installs it)")
    if os.path.exists(ctx.args.kpod):
        for rt in ("runc", "crun"):
            ctx.kpod[rt] = E.setup_kpod(os.path.join(BASE, "kpod"), ctx.args.kpod, subnets[1], rt)
    else:
        log(f"kpod not found at {ctx.args.kpod}")


def cleanup(ctx: Ctx, keep_cache: bool) -> None:
    log("cleaning up")
    for r in (ctx.push_registry, ctx.registry):
        if r:
            r.stop()
    seen = set()
    for eng in ctx.engines():
        if eng.kind in seen:
            continue
        seen.add(eng.kind)
        for store in eng.stores():
            ctx.reset_store(eng, store)
    killed = E.kill_leftovers(BASE)
    for p in killed:
        log(f"  killed leftover {p['comm']} ({p['pid']})")
    for bridge in E.BRIDGES:  # the CNI bridge plugin leaves its bridge behind
        if os.path.exists(f"/sys/class/net/{bridge}"):
            subprocess.run(["ip", "link", "del", bridge], capture_output=True)
    for name in os.listdir(BASE) if os.path.isdir(BASE) else []:
        if name == "cache" and keep_cache:
            continue
        E.wipe(os.path.join(BASE, name), BASE)
    if not keep_cache:
        E.wipe(BASE, BASE)


def prepare_images(ctx: Ctx, need_large: bool, need_many: bool) -> None:
    log("building test images (cached in %s)" % ctx.cache)
    ctx.paths["busybox"] = I.busybox_archive(ctx.cache)
    if need_large:
        ctx.paths["large"], ctx.large_info = I.large_archive(ctx.cache)
        log(f"  large image: {ctx.large_info['tar_bytes'] / 1e6:.0f} MB tar, {ctx.large_info['entries']} entries, "
            f"{ctx.large_info['gzip_bytes'] / 1e6:.0f} MB gzip (from {ctx.large_info['source']})")
    if need_many:
        ctx.paths["many"] = I.many_archive(ctx.cache, ctx.counts["images"])


def start_registry(ctx: Ctx) -> None:
    if not shutil.which("docker-registry") or not shutil.which("skopeo"):
        log("docker-registry or skopeo missing: pull scenarios cannot run")
        return
    ctx.registry = Registry(os.path.join(BASE, "registry")).start(fresh=True)
    for what in ("busybox", "large"):
        if what not in ctx.paths:
            continue
        r = E.run_cmd(["skopeo", "copy", "--dest-tls-verify=false", f"docker-archive:{ctx.paths[what]}",
                       f"docker://{ctx.registry.host}/kpodbench/{what}:latest"], timeout=600)
        if not r.ok:
            log(f"skopeo copy of {what} failed: {r.first_error()}")
    log(f"registry on {ctx.registry.host}")


def check_podman(ctx: Ctx) -> None:
    """Try podman once: the configuration must let it run a container here."""
    if not ctx.podman:
        return
    try:
        bb = ctx.ensure_image(ctx.podman, "main", "busybox")
        must(ctx.podman.run("main", "run", "--rm", "--network", "none", bb, "true"), "podman run")
    except StepFailed as e:
        log(f"podman cannot run a container with the bench configuration: {e}")


# --------------------------------------------------------------------------- report


def fmt_s(v: float | None) -> str:
    if v is None:
        return "—"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def cell(e: dict | None) -> str:
    if e is None:
        return "—"
    if e["status"] != "ok" and not e["summary"]:
        return e["status"]
    s = e["summary"]
    txt = f"{fmt_s(s['median'])} ({fmt_s(s['min'])}–{fmt_s(s['max'])})"
    if e["status"] != "ok":
        txt += f" then {e['status']}"
    return txt


def fmt_ratio(r: dict | None) -> str:
    return f"{r['median']:.2f}×" if r else "—"


def mib(kb: float | None) -> str:
    return "—" if not kb else f"{kb / 1024:.0f}"


def short(text: str, n: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def verdict(res: dict, label: str) -> str:
    e = res["engines"].get(label)
    if e is None:
        return ""
    if e["status"] == "not supported":
        return f"kpod: not supported yet ({short(e['note'])})"
    if e["status"] == "failed" and not e["summary"]:
        return f"kpod failed: {short(e['note'])}"
    r = res["ratios"].get(label)
    parts = []
    if r is None:
        parts.append("no ratio (podman has no numbers)")
    elif res["goal_ratio"] is not None and (label.endswith("(runc)") or "crun" not in label):
        if r["median"] <= res["goal_ratio"]:
            parts.append("meets goal")
        else:
            parts.append(f"**kpod behind** ({r['median']:.2f}× against ≤ {res['goal_ratio']}×)")
    else:
        parts.append("kpod faster" if r["median"] < 1 else "kpod slower")
    parts += e.get("warnings", [])
    if e["status"] == "failed":
        parts.append(f"failed in a later round: {short(e['note'])}")
    return "; ".join(parts)


def render(ctx: Ctx, results: list[dict], extras: dict, mach: dict, elapsed: float) -> str:
    L: list[str] = []
    a = L.append
    a("# kpod performance against podman")
    a("")
    a("Generated by `make bench` (`bench/run.py`); do not edit by hand. Raw numbers: "
      "[performance.json](performance.json).")
    a("")
    a(f"- Date: {mach['date']}; run took {elapsed / 60:.1f} min"
      + (" (--quick: fewer rounds and smaller counts)" if ctx.quick else ""))
    a(f"- Machine: {mach['nproc']} CPUs ({mach['cpu']}), {mach['memory_gib']} GiB memory, kernel {mach['kernel']}, "
      f"cgroups {mach['cgroups']}, {mach['os']}")
    a("- Versions: " + "; ".join(f"{k} {v}" for k, v in mach["versions"].items()))
    a("- Other work may have been running on the machine at the same time; ratios come from rounds "
      "run back to back, so they are steadier than the absolute times.")
    a("")
    a("## Results")
    a("")
    a("Seconds: median (min–max) over the rounds. Ratio: median over rounds of kpod/podman (below 1: kpod is faster). "
      "Peak RSS: median of the largest resident set among each round's commands (wait4 rusage), MiB.")
    a("")
    met = behind = unsupported = 0
    for res in results:
        for label, e in res["engines"].items():
            if e["engine"] != "kpod" or res["goal_ratio"] is None or e["runtime"] != "runc":
                continue
            r = res["ratios"].get(label)
            if e["status"] == "not supported" or (e["status"] != "ok" and not r):
                unsupported += 1
            elif r:
                met, behind = (met + 1, behind) if r["median"] <= res["goal_ratio"] else (met, behind + 1)
    rss = extras.get("rss")
    if rss:
        kp = next((e for e in rss["engines"].values() if e["engine"] == "kpod"), None)
        if kp and kp["status"] == "ok":
            met, behind = (met + 1, behind) if kp["conmon_only"] else (met, behind + 1)
        elif kp:
            unsupported += 1
    a(f"Goals: **{met} met, {behind} behind, {unsupported} not measurable yet** (kpod not supporting the "
      "scenario or failing in it).")
    a("")
    a("| Scenario | kpod s | podman s | kpod/podman | Goal | Peak RSS MiB kpod / podman | Note |")
    a("|---|---|---|---|---|---|---|")
    for res in results:
        pod = next((e for e in res["engines"].values() if e["engine"] == "podman"), None)
        kl = [(l, e) for l, e in res["engines"].items() if e["engine"] == "kpod"]
        for label, e in kl or [(None, None)]:
            title = res["title"]
            if len(kl) > 1:
                title += f" — kpod on {e['runtime']}"
            ratio = res["ratios"].get(label) if label else None
            goal = res["goal"]
            if len(kl) > 1 and e and e["runtime"] != "runc":
                goal = "— (reported)"
            rss_k = e["rss_summary"].get("median") if e and e["rss_summary"] else None
            rss_p = pod["rss_summary"].get("median") if pod and pod["rss_summary"] else None
            note = verdict(res, label) if label else ""
            if pod and pod["status"] != "ok":
                note = (note + "; " if note else "") + f"podman {pod['status']}: {short(pod['note'])}"
            extra = []
            if res.get("fill_secs"):
                extra.append("fill: " + ", ".join(f"{k} {v:.0f} s" for k, v in res["fill_secs"].items()))
            if res.get("load_secs"):
                extra.append("load: " + ", ".join(f"{k} {v:.0f} s" for k, v in res["load_secs"].items()))
            if res.get("output_bytes"):
                extra.append("archive size: " + ", ".join(f"{k} {v / 1e6:.0f} MB" for k, v in res["output_bytes"].items()))
            if extra:
                note = (note + "; " if note else "") + "; ".join(extra)
            a(f"| {title} | {cell(e)} | {cell(pod)} | {fmt_ratio(ratio)} | {goal} | "
              f"{mib(rss_k)} / {mib(rss_p)} | {note} |")
    if rss:
        pod = next((e for e in rss["engines"].values() if e["engine"] == "podman"), None)
        kp = next((e for e in rss["engines"].values() if e["engine"] == "kpod"), None)

        def rcell(e):
            if not e:
                return "—"
            if e["status"] != "ok":
                return e["status"]
            return f"{e['rss_kb_per_container'] / 1024:.2f} RSS, {e['pss_kb_per_container'] / 1024:.2f} PSS"

        note = ""
        if kp and kp["status"] == "ok":
            note = "conmon only: meets goal" if kp["conmon_only"] else f"**kpod behind**: resident {kp['resident']}"
        elif kp:
            note = f"kpod: {kp['status']} ({short(kp['note'])})"
        if pod and pod["status"] == "ok":
            note += f"; podman resident: {pod['resident']}"
        ratio = f"{rss['ratio_rss']:.2f}×" if rss.get("ratio_rss") else "—"
        a(f"| {rss['title']} (MiB per container) | {rcell(kp)} | {rcell(pod)} | {ratio} | {rss['goal']} | — | {note} |")
    a("")
    fl = extras.get("floors")
    if fl and fl["tools"]:
        a("## Floors: the same work without either engine")
        a("")
        a("| What | Seconds |")
        a("|---|---|")
        for k, v in fl["tools"].items():
            a(f"| {k} | {fmt_s(v['secs']) if v['ok'] else 'failed: ' + short(v['error'], 100)} |")
        a("")
        a("Medians of 5 after a warm-up, except the layer and skopeo rows (one run). "
          "runc/crun run `true` in a busybox bundle with `runc spec` defaults (crun in a private mount "
          "namespace without /sys/fs/cgroup/unified, as issue 5 describes). The layer rows use the large image's "
          f"stdlib layer ({ctx.large_info.get('tar_bytes', 0) / 1e6:.0f} MB tar, "
          f"{ctx.large_info.get('gzip_bytes', 0) / 1e6:.0f} MB gzip, {ctx.large_info.get('entries', 0)} entries). "
          "`python -c pass` is the floor under every kpod command, as the runtime rows are under `run`; "
          "the CNI rows (medians of 5) run the bench network's plugin list on a new network namespace with "
          "nothing else, as libcni does for each plugin: under every `run` on a bridge network.")
        a("")
    imp = extras.get("importtime")
    if imp and imp["commands"]:
        a("## Import-time budget (`python -X importtime`)")
        a("")
        for name, c in imp["commands"].items():
            if c["status"] != "ok":
                a(f"- `{name}`: {c['status']} ({short(c['note'])})")
                continue
            pk = sorted({m.split(".")[0] for m in c["forbidden_loaded"]})
            forb = ", ".join(pk) if pk else "none"
            if name != "kpod run":
                forb += " — budget met" if not pk else " — **over budget**"
            a(f"- `{name}`: {c['total_import_ms']:.1f} ms importing {c['modules']} modules "
              f"(plugins/stevedore/yaml/pluggy loaded: {forb}). Top by cumulative time: "
              + ", ".join(f"{r['module']} {r['cum_us'] / 1000:.1f} ms" for r in c["top_cumulative"][:8])
              + ". Top by own time: "
              + ", ".join(f"{r['module']} {r['self_us'] / 1000:.1f} ms" for r in c["top_self"][:5]) + ".")
        a("")
    a("## What each scenario does")
    a("")
    a("Both engines get the same arguments after their global flags. Global flags: podman "
      "`--root R --runroot RR --runtime runc --storage-driver overlay --cgroup-manager cgroupfs "
      "--events-backend file --network-config-dir D --tmpdir RR/libpod-tmp --volumepath R/volumes`; kpod "
      "`--root R --runroot RR --runtime runc|crun --storage-driver overlay --cni-config-dir D` with "
      "`KPOD_DEFAULT_NETWORK` and `KPOD_DEFAULT_ULIMITS` in the environment (no config file, so kpod "
      "imports no yaml unless the machine has /etc/kpod/kpod.yaml). "
      "Each round runs every engine once, alternating the order; one warm-up run of each comes first "
      "and is not counted (it also decides whether kpod supports the scenario), except for load, save, "
      "push and pull, whose first counted round decides that instead.")
    a("")
    for res in results + [x for x in (extras.get("rss"),) if x]:
        a(f"- **{res['title']}**: {res['description']}")
    a("")
    a("Images: `localhost/kpodbench/busybox:latest` is one uncompressed layer built by "
      "`libpod_core.testimage.rootfs_tar` (Debian busybox-static), as a docker-archive. The large image "
      "`localhost/kpodbench/large:latest` adds a gzip layer holding a Python standard library tree "
      f"({ctx.large_info.get('source', '?')} without site-packages"
      + (f", copied {ctx.large_info['copies']} times" if ctx.large_info.get("copies", 1) > 1 else "")
      + "), as a docker-archive with gzip layers; skopeo copies both to the bench's docker-registry on "
      "127.0.0.1 for `pull`.")
    a("")
    a("## Set-up notes")
    a("")
    a("- podman 4.3 runs with its own containers.conf (`$CONTAINERS_CONF`): `default_ulimits` within "
      f"this host's hard limits ({', '.join(E.host_ulimits())}; podman's own defaults ask for nofile 1048576 and "
      "fail without CAP_SYS_RESOURCE), cgroupfs, file events, the CNI backend (netavark is not installed) with the "
      "bench's own network, and `lock_type = \"file\"` so that it does not share (and reset) the host-wide "
      "/dev/shm/libpod_lock with other podman users. podman can only use runc here (crun 1.8 refuses "
      "hybrid cgroups).")
    a("- load, save, push, pull and the layer floor rows run after a `sync` (untimed): otherwise a run "
      "pays for the writeback of the previous run's files (the tar -x floor ranged 0.2-5.6 s without it).")
    a("- load and pull write into a new, empty store in every round and remove the stores only after the "
      "last round. This machine's ext4 has no journal, and without one the kernel does not reuse an inode "
      "freed in the last 60 s: each new inode's search re-checks every such inode of its group "
      "(`recently_deleted()` in fs/ext4/ialloc.c). Emptying the store between rounds (as this bench did "
      "until 2026-12-04) freed 8,000 inodes just before the next round created 8,000 beside them; perf put "
      "35-45% of a kpod pull's samples in that check, and the pull row read kpod 2.98 s against podman's "
      "4.48 s (0.67x); pulling by hand into fresh stores took kpod 1.1-1.3 s and podman 2.6-3.3 s.")
    a("- Peak RSS comes from wait4's rusage of each command: the largest resident set of the command and "
      "of the children it waited for (not a sum). Commands are forked by a ~10 MiB helper (bench/spawn.py), "
      "because Linux carries the forking process's peak across exec; values below ~10 MiB would read as that.")
    a("- `push` goes to a fresh, empty registry on a new port in every round; podman's blob-info cache "
      "(/var/lib/containers/cache) therefore cannot skip uploads.")
    a("")
    return "\n".join(L) + "\n"


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1-2 rounds and smaller counts (development)")
    ap.add_argument("--only", nargs="+", metavar="SCENARIO", help="run only these scenarios")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    ap.add_argument("--keep", action="store_true", help="keep stores, registry data and cache under " + BASE)
    ap.add_argument("--keep-cache", action="store_true", help="keep only the built test images")
    ap.add_argument("--kpod", default=os.path.join(REPO, ".venv", "bin", "kpod"), help="kpod executable")
    ap.add_argument("--no-podman", action="store_true", help="measure kpod alone")
    ap.add_argument("--output", metavar="PREFIX", help="write PREFIX.md and PREFIX.json")
    ap.add_argument("--render", metavar="JSON", help="only rewrite the markdown next to JSON from its numbers")
    args = ap.parse_args()
    if args.render:
        with open(args.render) as f:
            data = json.load(f)
        ctx = argparse.Namespace(quick=data.get("quick", False), large_info=data.get("large_image") or {})
        extras = {k: data[k] for k in EXTRA_KEYS if k in data}
        md = render(ctx, data["scenarios"], extras, data["machine"], data.get("elapsed_s", 0))
        with open(os.path.splitext(args.render)[0] + ".md", "w") as f:
            f.write(md)
        print(md)
        return 0
    keys = [s.key for s in SCENARIOS] + list(EXTRA_KEYS)
    if args.list:
        for s in SCENARIOS:
            print(f"{s.key:12} {s.title}")
        print(f"{'rss':12} resident memory per detached container")
        print(f"{'importtime':12} python -X importtime of kpod --help / version / run")
        print(f"{'floors':12} runc/crun/zcat/tar/CNI/skopeo alone, for reference")
        return 0
    only = args.only or keys
    bad = [k for k in only if k not in keys]
    if bad:
        ap.error(f"unknown scenario(s) {', '.join(bad)}; choose from {', '.join(keys)}")
    if os.geteuid() != 0:
        ap.error("run as root (both engines run rootful containers)")
    if args.output:
        prefix = args.output
    elif not args.quick and not args.only:
        prefix = os.path.join(REPO, "docs", "performance")
    else:
        prefix = os.path.join(HERE, "results", "latest")

    os.makedirs(os.path.dirname(BASE), exist_ok=True)
    lockf = open(BASE.rstrip("/") + ".lock", "w")
    try:
        fcntl.flock(lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"another bench run holds {lockf.name}", file=sys.stderr)
        return 1

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    ctx = Ctx(args)
    results: list[dict] = []
    extras: dict = {}
    mach: dict = {}
    rc = 0
    try:
        setup(ctx)
        if os.path.isdir(BASE):  # leftovers of an interrupted run
            for eng in ctx.engines()[:2]:
                for store in eng.stores():
                    ctx.reset_store(eng, store)
        selected = [s for s in SCENARIOS if s.key in only]
        need_large = any(s.key in ("load", "save", "push", "pull") for s in selected) or "floors" in only
        need_many = any(s.key == "images" for s in selected)
        prepare_images(ctx, need_large, need_many)
        mach = machine_info(ctx)
        log("versions: " + "; ".join(f"{k} {v}" for k, v in mach["versions"].items()))
        if any(s.key in ("pull", "push", "save", "load") for s in selected) or "floors" in only:
            start_registry(ctx)
        if any("busybox" in s.needs for s in selected):
            check_podman(ctx)
        for sc in selected:
            try:
                results.append(measure(sc, ctx))
            except Exception as e:  # noqa: BLE001
                log(f"{sc.key}: harness error {type(e).__name__}: {e}")
                traceback.print_exc()
        if "rss" in only:
            try:
                extras["rss"] = measure_rss(ctx)
            except Exception as e:  # noqa: BLE001
                log(f"rss: harness error {type(e).__name__}: {e}")
        if "importtime" in only:
            try:
                extras["importtime"] = measure_importtime(ctx)
            except Exception as e:  # noqa: BLE001
                log(f"importtime: harness error {type(e).__name__}: {e}")
        if "floors" in only:
            extras["floors"] = measure_floors(ctx)
    except KeyboardInterrupt:
        log("interrupted")
        rc = 130
    finally:
        if not args.keep:
            try:
                cleanup(ctx, keep_cache=args.keep_cache)
            except Exception as e:  # noqa: BLE001
                log(f"cleanup failed: {e}")
        else:
            for r in (ctx.push_registry, ctx.registry):
                if r:
                    r.stop()
            log(f"kept {BASE} (--keep)")
    E.stop_spawners()
    elapsed = time.time() - T0
    if results or extras:
        if not mach:
            mach = machine_info(ctx)
        md = render(ctx, results, extras, mach, elapsed)
        os.makedirs(os.path.dirname(prefix), exist_ok=True)
        with open(prefix + ".md", "w") as f:
            f.write(md)
        with open(prefix + ".json", "w") as f:
            json.dump({"machine": mach, "quick": ctx.quick, "elapsed_s": elapsed, "large_image": ctx.large_info,
                       "counts": ctx.counts, "scenarios": results, **extras}, f, indent=1, default=str)
        print(md)
        log(f"wrote {prefix}.md and {prefix}.json")
    return rc


if __name__ == "__main__":
    sys.exit(main())
