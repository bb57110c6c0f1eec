"""Shared by the benchmarks: an S3 endpoint (the sandbox's, or a moto server of their own)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from snakemake_executor_plugin_awsbatch.sandbox.ports import free_port


@contextmanager
def s3_endpoint() -> Iterator[str]:
    """AWS_ENDPOINT_URL if set (e.g. the sandbox's moto), else a moto server of our own.

    The server runs in its own process, as the sandbox's does, so it does not share a
    GIL with the client being measured.
    """
    given = os.environ.get("AWS_ENDPOINT_URL")
    if given:
        yield given
        return
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, server)
        os.environ["AWS_ENDPOINT_URL"] = url
        yield url
    finally:
        os.environ.pop("AWS_ENDPOINT_URL", None)
        server.terminate()
        server.wait(timeout=30)


def _wait_until_up(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.1)


def dummy_credentials() -> None:
    """Credentials and region for moto, unless the environment already has them."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
