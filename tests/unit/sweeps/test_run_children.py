"""A sweep's child command dies with the sweep, even when the sweep is killed with SIGKILL (issue 10 item 4)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")


def test_child_stops_within_seconds_of_a_sigkilled_sweep(tmp_path: Path):
    pid_file = tmp_path / "child.pid"
    # The child behaves like Lightning: it catches SIGTERM and carries on, so only a signal it cannot catch stops it.
    child = textwrap.dedent(f"""
        import os, signal, time
        signal.signal(signal.SIGTERM, lambda *a: None)
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        time.sleep(120)
    """)
    sweep = textwrap.dedent(f"""
        import os, sys
        from pathlib import Path
        from specframe.sweeps.run import subprocess_runner
        subprocess_runner([sys.executable, "-c", {child!r}], Path({str(tmp_path / "log.txt")!r}), dict(os.environ))
    """)
    parent = subprocess.Popen([sys.executable, "-c", sweep])
    deadline = time.time() + 60
    while not pid_file.is_file() and time.time() < deadline:
        time.sleep(0.1)
    assert pid_file.is_file(), "the child never started"
    pid = int(pid_file.read_text())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 5
    while Path(f"/proc/{pid}").exists() and time.time() < deadline:
        time.sleep(0.05)
    gone = not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    if not gone:
        os.kill(pid, signal.SIGKILL)
    assert gone, "the child outlived its sweep by more than 5 s"
