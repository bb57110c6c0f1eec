"""podman: its configuration, its Docker-compatible API service, the sandbox's job containers.

Every podman call here runs with CONTAINERS_CONF pointing at the state directory's
containers.conf, so nothing under /etc is touched.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from snakemake_executor_plugin_awsbatch.sandbox import processes
from snakemake_executor_plugin_awsbatch.sandbox.errors import SandboxError
from snakemake_executor_plugin_awsbatch.sandbox.state import StateDir

# Label moto's job containers carry (set in moto_patches); value: StateDir.sandbox_id.
CONTAINER_LABEL = "snakemake-awsbatch-sandbox"
# Label of the containers that keep what a running sandbox needs: its image (see
# hold_image), the bridge of its nodes' network (node_network.py).
HOLD_LABEL = "snakemake-awsbatch-sandbox-image"

# crun (podman's default runtime) fails on hybrid cgroups; without the ulimits a container
# start fails with "setrlimit RLIMIT_NOFILE: Operation not permitted"; host networking lets
# containers reach moto on 127.0.0.1 (moto asks for it too, MOTO_DOCKER_NETWORK_MODE=host).
# The nodes of multi-node jobs alone run on a network of their own (node_network.py).
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
netns = "host"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"

[engine.runtimes]
runc = ["{runc}"]
"""


def write_config(state: StateDir, runc: str) -> None:
    state.containers_conf.write_text(CONTAINERS_CONF.format(runc=runc))


def environment(state: StateDir) -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(state.containers_conf)}


def podman(state: StateDir, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["podman", *args], env=environment(state), capture_output=True, text=True
    )
    if check and result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise SandboxError(f"podman {args[0]} failed: {detail}")
    return result


def start_service(state: StateDir) -> int:
    """Start `podman system service` on the state directory's socket; -> pid once it answers."""
    state.podman_socket.unlink(missing_ok=True)
    argv = ["podman", "system", "service", "--time=0", f"unix://{state.podman_socket}"]
    pid = processes.spawn(argv, state.logs / "podman.log", environment(state))
    if not processes.wait_until(lambda: _answers(state.podman_socket), 30):
        processes.stop(pid, str(state.podman_socket))
        raise SandboxError(f"podman's API service did not start; see {state.logs / 'podman.log'}")
    return pid


def _answers(sock_path: Path) -> bool:
    """True once the Docker API's /_ping answers OK on the socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(str(sock_path))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: podman\r\n\r\n")
            return b" 200 " in sock.recv(64)
    except OSError:
        return False


def image_exists(state: StateDir, image: str) -> bool:
    return podman(state, "image", "exists", image, check=False).returncode == 0


def job_containers(state: StateDir) -> list[str]:
    """Names of the containers (running or not) that this sandbox's moto started."""
    return _labelled(state, CONTAINER_LABEL)


def hold_image(state: StateDir, image: str) -> None:
    """Create (never start) a container on image, labelled as this sandbox's.

    podman refuses to remove an image a container uses, so another sandbox's rebuild, which
    prunes superseded images, cannot pull this running sandbox's image from under it.
    """
    podman(state, "rm", "--force", _hold_name(state), check=False)
    podman(
        state,
        "create",
        "--label",
        f"{HOLD_LABEL}={state.sandbox_id}",
        "--name",
        _hold_name(state),
        image,
        "true",
    )


def _hold_name(state: StateDir) -> str:
    return f"awsbatch-sandbox-{state.sandbox_id}-image"


def remove_job_containers(state: StateDir) -> list[str]:
    """Force-remove this sandbox's containers at once (no grace period): `down` is final.

    -> the names of the job containers removed (the image-holding one is not reported).
    """
    names = job_containers(state)
    everything = names + _labelled(state, HOLD_LABEL)
    if everything:
        podman(state, "rm", "--force", "--time", "0", *everything, check=False)
    return names


def _labelled(state: StateDir, label: str) -> list[str]:
    result = podman(
        state,
        "ps",
        "--all",
        "--filter",
        f"label={label}={state.sandbox_id}",
        "--format",
        "{{.Names}}",
    )
    return result.stdout.split()
