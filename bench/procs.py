"""Helpers the benchmark scripts share for the server processes they start."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx


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


def wait_ready(
    name: str,
    proc: subprocess.Popen[bytes],
    url: str,
    timeout: float,
    tail: Callable[[], str],
    *,
    headers: dict[str, str] | None = None,
    poll: float = 0.3,
) -> None:
    """Until `url` answers 200; RuntimeError (with the log's tail) if the server exits first
    or is not ready after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{tail()}")
        try:
            if httpx.get(url, headers=headers, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(poll)
    raise RuntimeError(f"{name} not ready after {timeout}s:\n{tail()}")
