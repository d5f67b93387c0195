"""Helpers the benchmark scripts share for the server processes they start."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path


def stop_group(proc: subprocess.Popen[bytes] | None) -> bool:
    """SIGTERM a server's process group, SIGKILL after 15 s; False if it was not running."""
    if proc is None or proc.poll() is not None:
        return False
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
    return True


def log_tail(log: Path, n: int) -> str:
    """The last `n` lines of a server's log file."""
    return "\n".join(log.read_text(errors="replace").splitlines()[-n:])
