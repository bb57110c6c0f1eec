"""One local run of the example pipeline, shared by the tests that inspect its outputs."""

import time
from pathlib import Path

import pytest

from tests.workflows import variant_calling as vc


@pytest.fixture(scope="session")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Working directory of a complete `--profile local` run in a fresh copy."""
    missing = vc.missing_tools()
    if missing:
        # Fail rather than skip: `make test` installs these, so a skip would hide a gap.
        pytest.fail(f"missing {' '.join(missing)}: apt-get install {' '.join(missing)}")
    workdir = vc.copy_workflow(tmp_path_factory.mktemp("variant-calling"))
    started = time.monotonic()
    result = vc.run_snakemake(workdir, "local")
    assert result.returncode == 0, result.stderr[-5000:]
    print(f"variant-calling, --profile local: {time.monotonic() - started:.1f} s")
    return workdir
