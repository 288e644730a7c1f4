"""Process-group helpers: start a component in its own group, stop it by PID, never by name."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def process_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait() is missing


def process_runs_binary_from(pid: int, bin_dir: Path) -> bool:
    try:
        exe = Path(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return False
    return exe.parent == bin_dir.resolve()


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):  # not our child: init reaps it
        os.waitpid(pid, os.WNOHANG)


def stop_process_group(pid: int, grace_seconds: float = 10) -> None:
    """SIGTERM the group led by pid, then SIGKILL it if it is still alive after the grace time."""
    for sig, wait in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(pid)
            if not process_alive(pid):
                return
            time.sleep(0.05)
