"""The command runner's signal handling at the moment the command starts."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from snakemake_executor_plugin_awsbatch.jobside import command as command_module
from snakemake_executor_plugin_awsbatch.jobside.command import Command


def test_signal_while_the_command_starts_reaches_the_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A SIGTERM that lands after the child exists but before the runner knows its pid is
    held and forwarded, not lost: the command must not run on in the scratch directory."""
    command = Command(grace_seconds=5)
    real_popen = subprocess.Popen
    handled = []

    def popen_then_signal(*args: Any, **kwargs: Any) -> subprocess.Popen:
        child = real_popen(*args, **kwargs)
        # What the runner's signal handler does when the signal arrives right now.
        handled.append(command.forward(signal.SIGTERM))
        return child

    monkeypatch.setattr(command_module.subprocess, "Popen", popen_then_signal)
    started = time.monotonic()
    code = command.run("sleep 30", tmp_path, dict(os.environ))

    assert handled == [True]  # the handler must not unwind the runner mid-start
    assert code == 128 + signal.SIGTERM
    assert time.monotonic() - started < 10


def test_no_command_no_forwarding() -> None:
    assert Command(grace_seconds=5).forward(signal.SIGTERM) is False
