"""Run the job's shell command in its own process group and pass signals on to it.

The command gets its own session, so a signal for the runner does not reach it twice
and the whole group (the shell and everything it started) can be signalled at once.
If the group ignores the forwarded signal, it is killed after a grace period, so the
runner still has time to clean up before Batch's own SIGKILL (30 s after SIGTERM). When
the shell ends, whatever is left of its group is killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from pathlib import Path


class Command:
    def __init__(self, grace_seconds: float) -> None:
        self.grace_seconds = grace_seconds
        self._proc: subprocess.Popen[bytes] | None = None
        self._killer: threading.Timer | None = None
        # A signal that arrives while the command is being started is held until its
        # process exists: an exception raised in the middle of Popen could leave the child
        # running, unsignalled, in the scratch directory that cleanup is removing.
        self._starting = False
        self._held: int | None = None

    def run(self, command: str, cwd: Path, env: dict[str, str]) -> int:
        """Run `bash -c command`; its exit code, 128+N if it died from signal N."""
        self._starting = True
        try:
            self._proc = subprocess.Popen(
                ["bash", "-c", command], cwd=cwd, env=env, start_new_session=True
            )
        finally:
            self._starting = False
        if self._held is not None:
            self.forward(self._held)
        try:
            code = self._proc.wait()
        finally:
            # Whatever the shell left running in the background (or what ignored SIGINT, as
            # background jobs of a non-interactive shell do) must not write into scratch
            # while it is being removed.
            _signal_group(self._proc.pid, signal.SIGKILL)
            self._proc = None
            if self._killer is not None:
                self._killer.cancel()
        return 128 - code if code < 0 else code

    def forward(self, signum: int) -> bool:
        """Send `signum` to the running command's group; False when no command runs."""
        proc = self._proc
        if proc is None:
            if self._starting:
                self._held = signum
            return self._starting
        _signal_group(proc.pid, signum)
        if self._killer is None:
            self._killer = threading.Timer(
                self.grace_seconds, _signal_group, (proc.pid, signal.SIGKILL)
            )
            self._killer.daemon = True
            self._killer.start()
        return True


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group already exited
        os.killpg(pgid, signum)
