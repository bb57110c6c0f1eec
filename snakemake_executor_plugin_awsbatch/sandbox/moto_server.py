"""The sandbox's moto server process: `python -m ...sandbox.moto_server --port N --label ID`.

`up` starts it with DOCKER_HOST pointing at podman's socket, MOTO_DOCKER_NETWORK_MODE=host
and MOTO_PORT=N, so that moto's Batch backend runs each job as a podman container on the
host network. The patches in moto_patches.py apply to this process only.

With `--node-network NAME --node-gateway ADDRESS` (the sandbox's bridge network for the
nodes of multi-node jobs, moto_patches 9) it serves the same on ADDRESS:N too, for the
node containers, which do not share the host's loopback. That address is the network's
gateway, which the host has only while the network's bridge exists: the socket is bound
with IP_FREEBIND, which lets it bind an address the host does not have (yet, or again).

With `--instance-disk DIR --node-disks DIR2`, a child node of a multi-node job mounts
DIR2/<jobId>-<i> wherever a job mounts DIR (the instance's scratch disk): on AWS each
node is an instance of its own, with a disk of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import socket
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from snakemake_executor_plugin_awsbatch.sandbox import moto_compat, moto_patches
from snakemake_executor_plugin_awsbatch.sandbox.errors import SandboxError
from snakemake_executor_plugin_awsbatch.sandbox.exports import DUMMY_KEY as SANDBOX_KEY
from snakemake_executor_plugin_awsbatch.sandbox.podman import CONTAINER_LABEL

MODULE = "snakemake_executor_plugin_awsbatch.sandbox.moto_server"
# Linux's IP_FREEBIND (linux/in.h), which Python's socket module does not name.
IP_FREEBIND = 15


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=MODULE)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--label", required=True, help="sandbox id set on job containers")
    parser.add_argument("--grace", type=int, default=10, help="SIGTERM-to-SIGKILL seconds")
    parser.add_argument("--node-network", help="podman network of multi-node jobs' nodes")
    parser.add_argument("--node-gateway", help="its gateway, where moto serves them too")
    parser.add_argument(
        "--instance-disk",
        help="host directory standing for an instance's scratch disk (SCRATCH_ROOT)",
    )
    parser.add_argument(
        "--node-disks",
        help="where a multi-node job's child nodes, each an instance of its own, get theirs",
    )
    args = parser.parse_args(argv)
    if bool(args.node_network) != bool(args.node_gateway):
        parser.error("--node-network and --node-gateway go together")
    if bool(args.instance_disk) != bool(args.node_disks):
        parser.error("--instance-disk and --node-disks go together")
    disks = (Path(args.instance_disk), Path(args.node_disks)) if args.instance_disk else None
    node_network = (args.node_network, args.node_gateway) if args.node_network else None

    try:
        moto_compat.require()
    except SandboxError as err:
        sys.exit(f"error: {err}")  # one line, the last of moto.log, which `up` reports
    moto_patches.apply((CONTAINER_LABEL, args.label), args.grace, args.port, node_network, disks)

    # Imported after patching so nothing binds moto.settings before the patch.
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    app = with_container_credentials(DomainDispatcherApplication(create_backend_app))
    # make_server raises at once if the port is taken (ThreadedMotoServer would hang).
    server = make_server(
        "127.0.0.1", args.port, app, threaded=True, request_handler=MotoRequestHandler
    )
    if args.node_gateway:
        listening = _freebind_socket(args.node_gateway, args.port)
        nodes_server = make_server(
            args.node_gateway,
            args.port,
            app,
            threaded=True,
            request_handler=MotoRequestHandler,
            fd=listening.fileno(),
        )
        listening.close()  # the server has its own duplicate
        threading.Thread(target=nodes_server.serve_forever, daemon=True).start()
        print(f"moto listening on http://{args.node_gateway}:{args.port}", flush=True)
    signal.signal(signal.SIGTERM, _exit)
    print(f"moto listening on http://127.0.0.1:{args.port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


def _freebind_socket(address: str, port: int) -> socket.socket:
    """A listening socket on address:port, whether or not the host has address yet."""
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listening.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
    listening.bind((address, port))
    listening.listen(128)
    return listening


def with_container_credentials(app: Any) -> Any:
    """moto's app, plus the container credentials endpoint of the job containers (what
    the ECS agent serves on AWS, moto_patches 3). moto accepts any credentials."""

    def serve(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") != moto_patches.CREDENTIALS_PATH:
            return app(environ, start_response)
        expires = datetime.now(UTC) + timedelta(hours=6)
        body = json.dumps(
            {
                "AccessKeyId": SANDBOX_KEY,
                "SecretAccessKey": SANDBOX_KEY,
                "Token": SANDBOX_KEY,
                "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        ).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        start_response("200 OK", headers)
        return [body]

    return serve


def _exit(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


if __name__ == "__main__":
    main()
