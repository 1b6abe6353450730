"""A fake docker-credential-helpers program for tests: ``docker-credential-kpodtest``
(or another name: :class:`FakeHelper`'s *name*).

It keeps its credentials in ``DIR/store.json`` (``{server: [user, secret]}``), appends one
line per call to ``DIR/calls`` (action and server, never the secret), and misbehaves on
demand when ``DIR/mode`` holds ``crash``, ``garbage`` or ``hang``.
"""

from __future__ import annotations

import json
import os
import sys

NAME = "kpodtest"

SCRIPT = r'''#!{python}
import json, os, subprocess, sys, time
D = {dir!r}
store = os.path.join(D, "store.json")
mode_file = os.path.join(D, "mode")
mode = open(mode_file).read().strip() if os.path.exists(mode_file) else ""
action = sys.argv[1] if len(sys.argv) > 1 else ""
data = sys.stdin.read()
server = json.loads(data)["ServerURL"] if action == "store" else data.strip()
with open(os.path.join(D, "calls"), "a") as f:
    f.write(f"{{action}} {{server}}\n")
creds = json.load(open(store)) if os.path.exists(store) else {{}}
if mode == "crash":
    print("helper exploded", file=sys.stderr)
    sys.exit(3)
if mode == "garbage":
    print("this is not JSON {{")
    sys.exit(0)
if mode == "hang":
    subprocess.Popen(["sleep", "60"])  # a child holding the pipes open too
    time.sleep(60)
def save():
    with open(store + ".tmp", "w") as f:
        json.dump(creds, f)
    os.replace(store + ".tmp", store)
if action == "get":
    if server not in creds:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps({{"ServerURL": server, "Username": creds[server][0], "Secret": creds[server][1]}}))
elif action == "store":
    d = json.loads(data)
    creds[server] = [d["Username"], d["Secret"]]
    save()
elif action == "erase":
    if server not in creds:
        print("credentials not found in native keychain")
        sys.exit(1)
    del creds[server]
    save()
elif action == "list":
    print(json.dumps({{k: v[0] for k, v in creds.items()}}))
else:
    print("unknown action", file=sys.stderr)
    sys.exit(2)
'''


class FakeHelper:
    """``docker-credential-NAME`` in ``DIR/bin`` (*name*: default ``kpodtest``; give two
    helpers different names and directories to have two stores)."""

    def __init__(self, d, name: str = NAME):
        self.dir = str(d)
        self.name = name
        self.prog = f"docker-credential-{name}"
        self.bin = os.path.join(self.dir, "bin")
        self.state = os.path.join(self.dir, "state")
        os.makedirs(self.bin, exist_ok=True)
        os.makedirs(self.state, exist_ok=True)
        self.path = os.path.join(self.bin, self.prog)
        with open(self.path, "w") as f:
            f.write(SCRIPT.format(python=sys.executable, dir=self.state))
        os.chmod(self.path, 0o755)

    @property
    def env_path(self) -> str:
        """$PATH with this helper's directory first."""
        return self.bin + os.pathsep + os.environ.get("PATH", os.defpath)

    def store(self) -> dict:
        p = os.path.join(self.state, "store.json")
        return json.load(open(p)) if os.path.exists(p) else {}

    def put(self, server: str, user: str, secret: str) -> None:
        s = self.store()
        s[server] = [user, secret]
        with open(os.path.join(self.state, "store.json"), "w") as f:
            json.dump(s, f)

    def calls(self) -> list[str]:
        p = os.path.join(self.state, "calls")
        return open(p).read().splitlines() if os.path.exists(p) else []

    def set_mode(self, mode: str) -> None:
        p = os.path.join(self.state, "mode")
        if mode:
            with open(p, "w") as f:
                f.write(mode)
        elif os.path.exists(p):
            os.unlink(p)
