"""Spawner coprocess: runs one command per request and reports its time and peak RSS.

Why a separate small process: on Linux the peak RSS (ru_maxrss) that wait4 reports for a child
includes the memory of the process that forked it, carried across exec. Forked from the bench
(~30 MiB of Python), every command would seem to use at least that much. This helper, started
with ``python -I -S``, is about 10 MiB, which is below what either engine uses.

Protocol: one JSON object per line on stdin ({"argv", "env", "stdout", "stderr", "timeout"}),
one JSON object per line on stdout ({"rc", "secs", "maxrss_kb", "error"}).
"""

import json
import os
import signal
import sys
import time

_child = 0


def _alarm(signum, frame):
    if _child:
        try:
            os.kill(_child, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run(req):
    global _child
    out = os.open(req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    err = os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(null, 0)
            os.dup2(out, 1)
            os.dup2(err, 2)
            os.setsid()
            os.execvpe(req["argv"][0], req["argv"], req["env"])
        except BaseException as e:  # noqa: BLE001
            os.write(2, f"cannot execute {req['argv'][0]}: {e}\n".encode())
        os._exit(127)
    _child = pid
    for fd in (out, err, null):
        os.close(fd)
    signal.setitimer(signal.ITIMER_REAL, float(req.get("timeout") or 0))
    _, status, ru = os.wait4(pid, 0)
    secs = time.perf_counter() - t0
    signal.setitimer(signal.ITIMER_REAL, 0)
    _child = 0
    return {"rc": os.waitstatus_to_exitcode(status), "secs": secs, "maxrss_kb": ru.ru_maxrss}


def main():
    signal.signal(signal.SIGALRM, _alarm)
    for line in sys.stdin:
        try:
            res = run(json.loads(line))
        except Exception as e:  # noqa: BLE001
            res = {"rc": 127, "secs": 0.0, "maxrss_kb": 0, "error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(res) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
