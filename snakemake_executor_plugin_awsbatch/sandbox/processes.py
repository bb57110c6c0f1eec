"""Background processes the sandbox starts: spawn detached, recognise by pid, stop for good."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


def spawn(argv: Sequence[str], log: Path, env: Mapping[str, str]) -> int:
    """Start argv in its own session (a Ctrl-C in the terminal must not reach it) -> pid."""
    with open(log, "ab") as out:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
            close_fds=True,
        )
    return process.pid


def is_alive(pid: int | None) -> bool:
    """True if pid exists and has not exited (a zombie, state Z, has exited)."""
    if not pid:
        return False
    _reap(pid)
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return status.rsplit(")", 1)[-1].split()[0] != "Z"


def is_running(pid: int | None, marker: str) -> bool:
    """True if pid is alive and its command line contains marker (guards against pid reuse).

    Not for a process spawned a moment ago: while it is still inside execve, its command
    line reads empty for a short while; use is_alive() for that.
    """
    if not is_alive(pid):
        return False
    try:
        return marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def stop(pid: int | None, marker: str | None, grace: float = 10.0) -> None:
    """SIGTERM the process group, wait up to grace seconds, then SIGKILL it.

    marker None: pid is known to be ours (spawned by this process), no need to check.
    """
    if not (is_alive(pid) if marker is None else is_running(pid, marker)):
        return
    assert pid is not None
    _signal_group(pid, signal.SIGTERM)
    if wait_until(lambda: not is_alive(pid), grace):
        return
    _signal_group(pid, signal.SIGKILL)
    wait_until(lambda: not is_alive(pid), 5.0)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # spawn() made each process a session (and group) leader, so its group id is its pid;
    # signalling the group also reaches any helper it forked.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _reap(pid: int) -> None:
    # When this process started pid (`run`, tests), reap it so it does not linger as a zombie.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll condition until it holds or timeout seconds pass; returns whether it held."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
