"""Loopback ports: pick a free one, or check that a chosen one is free."""

from __future__ import annotations

import socket

from snakemake_executor_plugin_awsbatch.sandbox.errors import SandboxError

HOST = "127.0.0.1"


def free_port() -> int:
    """A port the kernel just had free on 127.0.0.1 (the server binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def check_free(port: int) -> None:
    if not 1 <= port <= 65535:
        raise SandboxError(f"--port {port} is not a TCP port (1-65535)")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError as err:
            raise SandboxError(
                f"port {port} on {HOST} is already in use ({err.strerror}); "
                "choose another --port, or omit --port to take a free one"
            ) from None
