"""The locks (requirements/*.txt, containers/requirements.txt) and pyproject's ranges.

What `make test` and the job images install is locked with hashes; the plugin's own
dependencies stay ranges whose lower ends are the locked versions the tests run with.
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tools import check_job_lock

REPO = Path(__file__).resolve().parents[2]
DEV_LOCK = REPO / "requirements" / "dev.txt"
JOB_LOCK = REPO / "containers" / "requirements.txt"
LOCKS = (DEV_LOCK, JOB_LOCK, REPO / "requirements" / "checkov.txt")


def _pyproject_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    texts = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        texts += extra
    return [Requirement(text) for text in texts]


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_a_lock_names_no_index_and_pins_every_package_with_hashes(lock):
    text = lock.read_text()
    assert "://" not in text  # no index URL of this machine (or any)
    pinned = check_job_lock.pins(lock)
    assert len(pinned) > 10
    requirement_lines = [
        line for line in text.splitlines() if line and not line.startswith((" ", "#"))
    ]
    assert len(requirement_lines) == len(pinned), "a line that is not name==version"
    assert text.count("==") == len(pinned)
    blocks = text.split("\n")
    for index, line in enumerate(blocks):
        if line in requirement_lines:
            assert line.endswith("\\") and "--hash=sha256:" in blocks[index + 1], line


def test_jobs_run_the_versions_the_submitting_side_runs():
    development, job = check_job_lock.pins(DEV_LOCK), check_job_lock.pins(JOB_LOCK)
    for name in ("snakemake", "snakemake-storage-plugin-s3", "boto3", "hatchling"):
        assert name in job
    differing = {name: (v, development.get(name)) for name, v in job.items()}
    assert {n: vs for n, vs in differing.items() if vs[0] != vs[1]} == {}


@pytest.mark.parametrize("machine", check_job_lock.MACHINES)
def test_the_job_lock_is_closed_on_both_architectures(machine):
    assert check_job_lock.version_mismatches(JOB_LOCK) == []
    assert check_job_lock.missing(JOB_LOCK, machine) == []


def test_the_closure_check_finds_a_package_left_out(tmp_path):
    lock = tmp_path / "requirements.txt"
    shutil.copy(JOB_LOCK.with_suffix(".in"), lock.with_suffix(".in"))
    pinned = check_job_lock.pins(JOB_LOCK)
    del pinned["smart-open"]  # snakemake needs it
    lock.write_text("".join(f"{name}=={version}\n" for name, version in pinned.items()))
    assert check_job_lock.missing(lock, "x86_64") != []
    assert any(item.startswith("smart-open") for item in check_job_lock.missing(lock, "aarch64"))


def test_every_lower_bound_is_the_locked_version():
    locked = check_job_lock.pins(DEV_LOCK)
    for requirement in _pyproject_requirements():
        lower = [s.version for s in requirement.specifier if s.operator == ">="]
        assert len(lower) == 1, f"{requirement} has no lower bound"
        name = canonicalize_name(requirement.name)
        assert lower[0] == locked[name], (
            f"{requirement}: the tests run with {name} {locked[name]}; "
            f"raise the lower bound to it (or run the tests with {lower[0]} too)"
        )
