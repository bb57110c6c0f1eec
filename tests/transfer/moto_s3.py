"""A moto S3 server on a free local port, reached through AWS_ENDPOINT_URL like real AWS.

The code under test never receives an endpoint: boto3's standard configuration chain
picks it up from the environment, in this process and in runner subprocesses alike.
The fixtures here serve tests/transfer and tests/jobside (their conftests import them).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from snakemake_executor_plugin_awsbatch.sandbox.ports import free_port
from snakemake_executor_plugin_awsbatch.transfer import Tuning

REGION = "us-east-1"
MiB = 1024 * 1024
# Multipart from 5 MiB (S3's smallest part), so a file of a few MiB goes up and down in
# several parts.
SMALL_PARTS = Tuning(
    multipart_threshold=5 * MiB,
    multipart_chunksize=5 * MiB,
    download_chunksize=5 * MiB,
    part_concurrency=4,
)
_buckets = itertools.count()


@contextmanager
def moto_server() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def point_aws_at(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)


def new_bucket() -> str:
    name = f"test-bucket-{next(_buckets)}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> None:
    point_aws_at(monkeypatch, moto_endpoint)


@pytest.fixture
def bucket() -> str:
    return new_bucket()


@pytest.fixture
def s3() -> Any:
    return boto3.client("s3")
