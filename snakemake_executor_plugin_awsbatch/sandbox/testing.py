"""A running sandbox for test suites (ours: tests/e2e, tests/sandbox; or a user's).

One sandbox per test process, however many conftest fixtures ask for it: the first
`acquire()` starts it (or reuses the live one $SNAKEMAKE_AWSBATCH_SANDBOX_DIR names), the
last `release()` takes down what it started. No pytest import here, so the package does
not depend on pytest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from snakemake_executor_plugin_awsbatch.sandbox import exports, lifecycle, podman
from snakemake_executor_plugin_awsbatch.sandbox.state import STATE_DIR_ENV, StateDir


@dataclass
class RunningSandbox:
    state: StateDir
    env: dict[str, str]
    started_here: bool
    users: int = field(default=0)

    @property
    def state_dir(self) -> Path:
        return self.state.root

    @property
    def scratch_dir(self) -> Path:
        return self.state.scratch

    @property
    def image(self) -> str:
        return self.env["SNAKEMAKE_AWSBATCH_IMAGE"]

    @property
    def stack_name(self) -> str:
        """The CloudFormation stack the sandbox runs on (for `--awsbatch-stack`)."""
        record = lifecycle.live_record(self.state)
        if record is None or "stack" not in record:
            raise RuntimeError(f"no sandbox with a deployed stack runs in {self.state.root}")
        return str(record["stack"])

    def session(self) -> exports.SandboxSession:
        """A boto3 session whose clients talk to this sandbox."""
        return exports.SandboxSession(self.env["AWS_ENDPOINT_URL"])

    def job_containers(self) -> list[str]:
        """Names of the job containers (running or exited) this sandbox's moto started."""
        return podman.job_containers(self.state)


_shared: RunningSandbox | None = None


def acquire(tmp_dir: Path) -> RunningSandbox:
    """The process's sandbox: reuse a live one named by the environment, else start one."""
    global _shared
    if _shared is None:
        _shared = _reuse() or _start(tmp_dir)
    _shared.users += 1
    return _shared


def release() -> None:
    """Drop one user; the last one takes down the sandbox if acquire() started it."""
    global _shared
    if _shared is None:
        return
    _shared.users -= 1
    if _shared.users == 0:
        if _shared.started_here:
            lifecycle.down(_shared.state)
        _shared = None


def _reuse() -> RunningSandbox | None:
    given = os.environ.get(STATE_DIR_ENV)
    if not given:
        return None
    state = StateDir.resolve(given)
    record = lifecycle.live_record(state)
    if record is None:
        return None
    return RunningSandbox(state, exports.environment_variables(record), started_here=False)


def _start(tmp_dir: Path) -> RunningSandbox:
    state = StateDir.resolve(str(tmp_dir / "sandbox"))
    record, started = lifecycle.up(state)
    return RunningSandbox(state, exports.environment_variables(record), started_here=started)
