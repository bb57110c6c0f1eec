"""One local run of the example pipeline, shared by the tests that inspect its outputs."""

from pathlib import Path

import pytest

from tests.workflows import variant_calling as vc


@pytest.fixture(scope="session")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Working directory of a complete `--profile local` run in a fresh copy."""
    return vc.run_local_pipeline(tmp_path_factory.mktemp("variant-calling"))
