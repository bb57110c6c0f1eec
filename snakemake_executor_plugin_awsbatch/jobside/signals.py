"""SIGTERM/SIGINT handling: forward to the command while it runs, otherwise unwind.

Batch sends SIGTERM on timeout and on TerminateJob. While the command runs, the signal
goes to its process group and the runner waits for it to end. In any other phase
(download, upload) the first signal raises `Interrupted` in the main thread, which stops
the transfers and leads straight to cleanup. Later signals are only recorded, so they
can never interrupt the cleanup itself.
"""

from __future__ import annotations

import signal
from types import FrameType

from .command import Command


class Interrupted(BaseException):
    """A BaseException, like KeyboardInterrupt, so `except Exception` does not swallow it."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


class SignalGuard:
    def __init__(self, command: Command) -> None:
        self.command = command
        self.signum: int | None = None
        self.quiet = False  # set during cleanup: record signals, never raise

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        if self.command.forward(signum):
            return
        if first and not self.quiet:
            raise Interrupted(signum)
