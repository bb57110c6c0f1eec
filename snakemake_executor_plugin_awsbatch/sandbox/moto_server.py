"""The sandbox's moto server process: `python -m ...sandbox.moto_server --port N --label ID`.

`up` starts it with DOCKER_HOST pointing at podman's socket, MOTO_DOCKER_NETWORK_MODE=host
and MOTO_PORT=N, so that moto's Batch backend runs each job as a podman container on the
host network. The patches in moto_patches.py apply to this process only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from snakemake_executor_plugin_awsbatch.sandbox import moto_patches
from snakemake_executor_plugin_awsbatch.sandbox.exports import DUMMY_KEY as SANDBOX_KEY
from snakemake_executor_plugin_awsbatch.sandbox.podman import CONTAINER_LABEL

MODULE = "snakemake_executor_plugin_awsbatch.sandbox.moto_server"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=MODULE)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--label", required=True, help="sandbox id set on job containers")
    parser.add_argument("--grace", type=int, default=10, help="SIGTERM-to-SIGKILL seconds")
    args = parser.parse_args(argv)

    moto_patches.apply((CONTAINER_LABEL, args.label), args.grace, args.port)

    # Imported after patching so nothing binds moto.settings before the patch.
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    # make_server raises at once if the port is taken (ThreadedMotoServer would hang).
    server = make_server(
        "127.0.0.1",
        args.port,
        with_container_credentials(DomainDispatcherApplication(create_backend_app)),
        threaded=True,
        request_handler=MotoRequestHandler,
    )
    signal.signal(signal.SIGTERM, _exit)
    print(f"moto listening on http://127.0.0.1:{args.port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


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
