"""Run the job's shell command in its own process group and pass signals on to it.

The command gets its own session, so a signal for the runner does not reach it twice
and the whole group (the shell and everything it started) can be signalled at once.
If the group ignores the forwarded signal, it is killed after a grace period, so the
runner still has time to clean up before Batch's own SIGKILL (30 s after SIGTERM). When
the shell ends, whatever is left of its group is killed.

The command is nearly always the job's Snakemake, `python -m snakemake <args>`. That one
runs in a fork of the runner instead of a new interpreter: it finds Python, boto3 and
botocore already imported, which saves each job about 0.45 s of CPU and of start-up
time (measured, see docs/scale.md). Anything else, or anything a shell would expand,
runs as `bash -c command` (`/bin/sh -c` in an image without bash).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path
from typing import Protocol

# Outside single quotes, these make bash do more than split words (expansion, globbing,
# operators, redirection): such a command goes to bash.
_SHELL_CHARS = frozenset('$`\\"*?[]{}~!#;&|<>()\n\t')
_SNAKEMAKE = ("python", "-m", "snakemake")


class _Process(Protocol):
    pid: int

    def wait(self) -> int: ...


class Command:
    def __init__(self, grace_seconds: float, script_python: str | None = None) -> None:
        self.grace_seconds = grace_seconds
        # The job's Snakemake runs a Python `script:` with sys.executable: in a tool
        # image, the image's own Python if it has one (runner.py).
        self.script_python = script_python
        self._proc: _Process | None = None
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
            args = snakemake_args(command)
            if args is None:
                # A tool image may have no bash; every image has /bin/sh.
                shell = shutil.which("bash", path=env.get("PATH")) or "/bin/sh"
                self._proc = subprocess.Popen(
                    [shell, "-c", command], cwd=cwd, env=env, start_new_session=True
                )
            else:
                self._proc = _Forked(args, cwd, env, self.script_python)
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


def snakemake_args(command: str) -> list[str] | None:
    """The arguments of `python -m snakemake <args>`, when bash would only split that
    command into words; else None."""
    words: list[str] = []
    word: list[str] = []
    quoted = in_word = False
    for char in command:
        if quoted:
            if char == "'":
                quoted = False
            else:
                word.append(char)
        elif char == "'":
            quoted = in_word = True
        elif char == " ":
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
        elif char in _SHELL_CHARS:
            return None
        else:
            word.append(char)
            in_word = True
    if quoted:
        return None
    if in_word:
        words.append("".join(word))
    if tuple(words[:3]) != _SNAKEMAKE:
        return None
    return words[3:]


class _Forked:
    """The job's Snakemake in a fork of the runner, in a session of its own."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str], python: str | None) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns (os._exit)
            _run_snakemake(args, cwd, env, python)
        self.pid = pid

    def wait(self) -> int:
        """Like Popen.wait: the exit code, or -N after signal N."""
        while True:
            try:
                _, status = os.waitpid(self.pid, 0)
            except InterruptedError:
                continue
            return os.waitstatus_to_exitcode(status)


def _run_snakemake(args: list[str], cwd: Path, env: dict[str, str], python: str | None) -> None:
    code = 1
    try:
        if python:
            sys.executable = python
        os.setsid()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        tempfile.tempdir = None  # TMPDIR changed: the runner's choice must not stick
        from snakemake.cli import main

        main(args)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
