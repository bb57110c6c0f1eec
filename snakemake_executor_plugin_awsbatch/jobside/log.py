"""Phase logging to stderr (CloudWatch), and each phase's duration for the report."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

# Every line the runner itself logs starts with this, so the submitting side can tell
# them from what the job's command printed.
PREFIX = "[awsbatch-runner]"


def log(message: str) -> None:
    print(f"{PREFIX} {message}", file=sys.stderr, flush=True)


class Phases:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            took = time.monotonic() - start
            self.seconds[name] = round(took, 6)
            log(f"{name}: {took:.3f} s")


def process_age() -> float | None:
    """Seconds since this process started (imports included), from /proc; None elsewhere."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None
