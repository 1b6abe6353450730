"""docs/library.md's example runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_library_example_runs(tmp_path):
    text = open(os.path.join(ROOT, "docs", "library.md")).read()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    code = code.replace("/tmp/kpod-demo", str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("crun crun version")
    assert lines[1] == "vfs"
    assert "overlay kpod-storage-overlay False" in lines and "vfs kpod-storage-vfs True" in lines
    assert lines[-1] == "argument"
