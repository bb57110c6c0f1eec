"""The sandbox's state directory: every file the sandbox writes lives under one directory.

Layout (all paths relative to the state directory):

    state.json        what `up` started: pids, port, image, stack, bucket, queues, the
                      network of multi-node jobs' nodes (node_network.py)
    lock              serialises concurrent up/down on the same directory
    containers.conf   podman configuration (runc, cgroupfs, ulimits, host network)
    podman.sock       podman's Docker-compatible API socket
    logs/             moto.log, podman.log
    scratch/          host directory mounted into every job (SNAKEMAKE_AWSBATCH_SCRATCH_ROOT)
    scratch.nodes/    <jobId>-<i>: that scratch disk for child node i of a multi-node job
    runtimes/         the job runtimes the "instance" installed at `up`, mounted read-only
                      into jobs in tool images (SNAKEMAKE_AWSBATCH_RUNTIME_ROOT)
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snakemake_executor_plugin_awsbatch.sandbox.errors import SandboxError

STATE_DIR_ENV = "SNAKEMAKE_AWSBATCH_SANDBOX_DIR"
DEFAULT_STATE_DIR = ".sandbox"
# sun_path holds 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107


@dataclass(frozen=True)
class StateDir:
    root: Path

    @classmethod
    def resolve(cls, given: str | None) -> StateDir:
        """--state-dir, else $SNAKEMAKE_AWSBATCH_SANDBOX_DIR, else ./.sandbox (made absolute)."""
        chosen = given or os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR
        state = cls(Path(chosen).expanduser().resolve())
        if len(str(state.podman_socket).encode()) > _MAX_SOCKET_PATH:
            raise SandboxError(
                f"state directory {state.root} is too long for a unix socket path; "
                "choose a shorter --state-dir"
            )
        return state

    @property
    def sandbox_id(self) -> str:
        """Short stable id of this directory; labels the job containers its moto starts."""
        return hashlib.sha256(str(self.root).encode()).hexdigest()[:12]

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def containers_conf(self) -> Path:
        return self.root / "containers.conf"

    @property
    def podman_socket(self) -> Path:
        return self.root / "podman.sock"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def scratch(self) -> Path:
        return self.root / "scratch"

    @property
    def node_disks(self) -> Path:
        """The scratch disks of multi-node jobs' child nodes, one directory per node."""
        return self.root / "scratch.nodes"

    @property
    def runtimes(self) -> Path:
        return self.root / "runtimes"

    def create(self) -> None:
        for directory in (self.root, self.logs, self.scratch):
            directory.mkdir(parents=True, exist_ok=True)

    def read(self) -> dict[str, Any] | None:
        """The recorded state, or None when nothing was recorded (or the record is unreadable)."""
        try:
            return json.loads(self.state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def write(self, state: dict[str, Any]) -> None:
        # Write-then-rename so a reader never sees half a file.
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.state_file)

    def forget(self) -> None:
        self.state_file.unlink(missing_ok=True)
        self.podman_socket.unlink(missing_ok=True)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive lock so two `up`/`down` on the same directory do not interleave."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
