"""Bring the sandbox up, find out whether it runs, take it down.

`up` starts two processes, both recorded in state.json with their pids:
podman's API service (on a unix socket in the state directory) and the sandbox's moto
server (on a loopback port, and on the gateway of the sandbox's network for the nodes of
multi-node jobs, node_network.py, also recorded). Into that moto it deploys the project's
CloudFormation templates (environment.py), which create the bucket and the Batch
environment, and it runs the job-runtime part of their launch template's boot script
(instance.py). The job containers moto starts carry a label naming the sandbox; `down`
removes them after stopping moto, then the nodes' network, so nothing is left behind (the
stacks live only in moto's memory).
"""

from __future__ import annotations

import shutil
import sys
import time
import urllib.request
from collections.abc import Sequence
from typing import Any

from snakemake_executor_plugin_awsbatch.sandbox import (
    environment,
    exports,
    image,
    instance,
    moto_compat,
    moto_server,
    node_network,
    podman,
    ports,
    prereqs,
    processes,
)
from snakemake_executor_plugin_awsbatch.sandbox.errors import SandboxError
from snakemake_executor_plugin_awsbatch.sandbox.state import StateDir

# Seconds from SIGTERM to SIGKILL for a stopped job: ECS's default. The job-side runner
# gives its command 20 s of that before it kills it, then cleans up.
DEFAULT_STOP_GRACE = 30
MOTO_START_TIMEOUT = 60


def up(
    state: StateDir,
    port: int | None = None,
    packages: Sequence[str] | None = None,
    stop_grace: int = DEFAULT_STOP_GRACE,
) -> tuple[dict[str, Any], bool]:
    """Start the sandbox unless it runs already -> (its record, whether this call started it)."""
    if stop_grace < 0:
        raise SandboxError(f"--stop-grace {stop_grace} must be 0 or more seconds")
    with state.locked():
        running = live_record(state)
        if running is not None:
            if port is not None and port != running["port"]:
                raise SandboxError(
                    f"the sandbox in {state.root} already runs on port {running['port']}; "
                    "run `down` first to change its port"
                )
            return running, False
        _stop_components(state, state.read())  # leftovers of a sandbox that died
        return _start(state, port, packages, stop_grace), True


def _start(
    state: StateDir, port: int | None, packages: Sequence[str] | None, stop_grace: int
) -> dict[str, Any]:
    tools = prereqs.require(prereqs.RUNTIME_TOOLS)
    prereqs.require_root("the sandbox")
    moto_compat.require()  # before the image build, which may take minutes
    if port is not None:
        ports.check_free(port)
    templates = environment.templates_dir()
    state.create()
    podman.write_config(state, tools["runc"])
    # Built before any process starts, so a failed build leaves nothing running.
    record: dict[str, Any] = {
        "state_dir": str(state.root),
        "scratch_dir": str(state.scratch),
        "runtime_root": str(state.runtimes),
        "image": image.ensure_image(state, packages, hold=True),
        "stop_grace_seconds": stop_grace,
    }
    record["runtime_key"] = image.ensure_runtime_image(state, record["image"])
    # A new sandbox is a new instance: it installs its runtimes afresh.
    shutil.rmtree(state.runtimes, ignore_errors=True)
    try:
        record["podman_pid"] = podman.start_service(state)
        state.write(record)
        record["port"] = port or ports.free_port()
        record["node_network"] = node_network.create(state, record["port"], record["image"])
        state.write(record)
        record["moto_pid"] = _start_moto(state, record["port"], stop_grace, record["node_network"])
        state.write(record)
        _wait_for_moto(state, record)
        session = exports.SandboxSession(exports.endpoint(record))
        deployed = environment.deploy(
            session,
            templates,
            {
                "RuntimeRepository": image.RUNTIME_REPOSITORY,
                "RuntimeKeys": record["runtime_key"],
                "RuntimeRoot": record["runtime_root"],
            },
        )
        instance.install_runtimes(
            session, state, deployed["batch"]["compute_environments"].values()
        )
        # Adds "batch", the key that marks a complete record (live_record).
        record.update(deployed)
        record["started_at"] = time.time()
        state.write(record)
    except BaseException:
        _stop_components(state, record, spawned_here=True)
        state.forget()
        raise
    return record


def _start_moto(state: StateDir, port: int, stop_grace: int, node_network: dict[str, str]) -> int:
    argv = [
        sys.executable,
        "-m",
        moto_server.MODULE,
        "--port",
        str(port),
        "--label",
        state.sandbox_id,
        "--grace",
        str(stop_grace),
        "--node-network",
        node_network["name"],
        "--node-gateway",
        node_network["gateway"],
        "--instance-disk",
        str(state.scratch),
        "--node-disks",
        str(state.node_disks),
    ]
    env = {
        **podman.environment(state),
        "DOCKER_HOST": f"unix://{state.podman_socket}",
        # Job containers on the host network reach moto on 127.0.0.1.
        "MOTO_DOCKER_NETWORK_MODE": "host",
        "MOTO_PORT": str(port),
    }
    return processes.spawn(argv, state.logs / "moto.log", env)


def _wait_for_moto(state: StateDir, record: dict[str, Any]) -> None:
    pid, url = record["moto_pid"], exports.endpoint(record) + "/moto-api/"

    def ready() -> bool:
        if not processes.is_alive(pid):
            raise SandboxError(f"moto did not start: {_last_line(state.logs / 'moto.log')}")
        return _answers(url)

    if not processes.wait_until(ready, MOTO_START_TIMEOUT, interval=0.2):
        raise SandboxError(f"moto did not answer within {MOTO_START_TIMEOUT} s on {url}")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _last_line(path: Any) -> str:
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        lines = []
    return lines[-1].strip() if lines else f"no output (see {path})"


def live_record(state: StateDir) -> dict[str, Any] | None:
    """The record of a fully running sandbox in state, else None."""
    record = state.read()
    if not record or "batch" not in record:
        return None
    moto_up = processes.is_running(record.get("moto_pid"), state.sandbox_id)
    podman_up = processes.is_running(record.get("podman_pid"), str(state.podman_socket))
    return record if moto_up and podman_up else None


def down(state: StateDir) -> list[str]:
    """Stop everything the sandbox in state started -> what was stopped (empty: nothing ran)."""
    with state.locked():
        stopped = _stop_components(state, state.read())
        state.forget()
    return stopped


def _stop_components(
    state: StateDir, record: dict[str, Any] | None, spawned_here: bool = False
) -> list[str]:
    """Stop moto first (it starts no more containers), then its containers and the nodes'
    network, then podman."""
    record = record or {}
    stopped = []
    moto_pid, podman_pid = record.get("moto_pid"), record.get("podman_pid")
    if _ours(moto_pid, state.sandbox_id, spawned_here):
        processes.stop(moto_pid, None)
        stopped.append(f"moto (pid {moto_pid})")
    stopped.extend(f"job container {name}" for name in _remove_containers(state))
    stopped.extend(_remove_network(state))
    if _ours(podman_pid, str(state.podman_socket), spawned_here):
        processes.stop(podman_pid, None)
        stopped.append(f"podman API service (pid {podman_pid})")
    return stopped


def _ours(pid: int | None, marker: str, spawned_here: bool) -> bool:
    """Whether a recorded pid is this sandbox's process and alive.

    A pid recorded earlier is recognised by something unique to this sandbox in its
    command line (moto: the sandbox id; podman: the socket path): the pid may have been
    reused since. A process this one just spawned needs no such check.
    """
    return processes.is_alive(pid) if spawned_here else processes.is_running(pid, marker)


def _remove_containers(state: StateDir) -> list[str]:
    if not state.containers_conf.exists() or prereqs.find_tool("podman") is None:
        return []
    return podman.remove_job_containers(state)


def _remove_network(state: StateDir) -> list[str]:
    """The nodes' network and its credentials rule, found by the sandbox's id: also when
    the record is gone."""
    if not state.containers_conf.exists() or prereqs.find_tool("podman") is None:
        return []
    return node_network.remove(state)


def status(state: StateDir) -> dict[str, Any] | None:
    """The running sandbox's record plus its current job containers, or None."""
    record = live_record(state)
    if record is None:
        return None
    return {**record, "job_containers": podman.job_containers(state)}
