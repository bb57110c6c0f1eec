from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.transfer.moto_s3 import moto_server, new_bucket, point_aws_at


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> None:
    point_aws_at(monkeypatch, moto_endpoint)


@pytest.fixture
def bucket() -> str:
    return new_bucket()


@pytest.fixture
def s3() -> Any:
    return boto3.client("s3")
