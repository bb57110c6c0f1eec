"""Fixtures for the sandbox's own tests.

`sandbox` is the same session-wide sandbox tests/e2e uses (shared through
sandbox.testing, so one test session starts one sandbox, not two).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sandbox_helpers import Jobs

from snakemake_executor_plugin_awsbatch.sandbox import testing


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[testing.RunningSandbox]:
    running = testing.acquire(tmp_path_factory.mktemp("e2e"))
    try:
        yield running
    finally:
        testing.release()


@pytest.fixture
def jobs(sandbox: testing.RunningSandbox) -> Jobs:
    return Jobs(sandbox)
