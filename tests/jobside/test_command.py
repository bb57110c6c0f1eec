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


def test_only_a_plain_snakemake_command_skips_the_shell() -> None:
    args = command_module.snakemake_args(
        "python -m snakemake --snakefile 'Snakefile' --target-jobs 'a:s=x y' "
        "--default-resources base64//dG1w= --mode 'remote'"
    )
    assert args == [
        "--snakefile",
        "Snakefile",
        "--target-jobs",
        "a:s=x y",
        "--default-resources",
        "base64//dG1w=",
        "--mode",
        "remote",
    ]
    for shell_only in (
        "python -m snakemake --x $HOME",  # expansion
        "pip install x && python -m snakemake",  # an operator, e.g. --precommand
        'python -m snakemake --config "a=1"',  # double quotes
        "python -m snakemake --x 'unclosed",
        "python3 -m snakemake_other",
        "exec python -m snakemake --mode remote",
    ):
        assert command_module.snakemake_args(shell_only) is None, shell_only


def test_the_jobs_snakemake_runs_in_a_fork_with_the_jobs_environment(tmp_path: Path) -> None:
    # The rule records its environment and the command line of the Snakemake that ran it.
    (tmp_path / "Snakefile").write_text(
        'rule a:\n    output: "out.txt"\n'
        '    shell: "echo $TMPDIR $MARK > {output}; '
        "tr '\\\\0' ' ' < /proc/$PPID/cmdline >> {output}\"\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path), "MARK": "from-the-manifest"}
    code = Command(grace_seconds=5).run(
        "python -m snakemake --cores 1 --quiet --nolock 'out.txt'", tmp_path, env
    )
    assert code == 0
    first, snakemake_cmdline = (tmp_path / "out.txt").read_text().splitlines()
    assert first.split() == [str(tmp_path), "from-the-manifest"]
    # A fork keeps this process's command line; a new interpreter would show its own.
    with open(f"/proc/{os.getpid()}/cmdline") as me:
        assert snakemake_cmdline.strip() == me.read().replace("\0", " ").strip()
    assert "-m snakemake" not in snakemake_cmdline


def test_a_failing_snakemake_in_a_fork_returns_its_exit_code(tmp_path: Path) -> None:
    (tmp_path / "Snakefile").write_text('rule a:\n    output: "x"\n    shell: "exit 3"\n')
    code = Command(grace_seconds=5).run(
        "python -m snakemake --cores 1 --quiet --nolock 'x'", tmp_path, dict(os.environ)
    )
    assert code == 1  # Snakemake's own exit code for a failed rule
