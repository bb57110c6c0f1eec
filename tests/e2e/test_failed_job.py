"""A rule that fails on Batch: the run fails and the user sees the container's own output."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from snakemake_executor_plugin_awsbatch.sandbox import testing
from tests.e2e import runs

pytestmark = pytest.mark.e2e

# The markers are computed by the shell ($((6*7)) -> 42), so they appear only in what the
# container printed, never in the command Snakemake echoes back in its error report.
SNAKEFILE = """
rule fail:
    output: "results/never.txt"
    shell: 'echo "out-marker-$((6*7))-{token}"; echo "err-marker-$((6*7))-{token}" >&2; exit 3'
"""


def test_failure_shows_the_tail_of_the_container_log(
    sandbox: testing.RunningSandbox, tmp_path: Path
) -> None:
    token = uuid.uuid4().hex[:10]
    markers = (f"out-marker-42-{token}", f"err-marker-42-{token}")
    workflow = runs.Workflow.create(sandbox, tmp_path / "fail", SNAKEFILE.replace("{token}", token))
    result = workflow.run(jobs=1)

    assert result.returncode != 0
    for marker in markers:
        assert marker in result.output, (marker, result.output[-5000:])
    (snakemake_log,) = workflow.snakemake_logs()
    (job_log,) = workflow.saved_job_logs()
    for marker in markers:
        assert marker in snakemake_log.read_text(), marker
        assert marker in job_log.read_text(), marker
    # The saved log is the failed job's, named after it.
    (job,) = runs.Batch(sandbox).jobs_of_run(result.run_id)
    assert job["status"] == "FAILED"
    assert job_log.name == f"{job['jobName']}.log"


MISSING_IMAGE = "localhost/snakemake-awsbatch-no-such-image:1"
PULL_SNAKEFILE = f"""
rule pulled:
    output: "results/never.txt"
    resources: awsbatch_image="{MISSING_IMAGE}"
    shell: "touch {{output}}"
"""


def test_an_image_that_cannot_be_pulled_fails_after_the_attempts_naming_it(
    sandbox: testing.RunningSandbox, tmp_path: Path
) -> None:
    workflow = runs.Workflow.create(sandbox, tmp_path / "pull", PULL_SNAKEFILE)
    result = workflow.run("--awsbatch-spot-retries", "2", jobs=1, timeout=180)

    assert result.returncode != 0
    assert f"image {MISSING_IMAGE}" in result.output
    assert "CannotPullContainerError" in result.output
    assert "never started (after 3 attempts)" in result.output, result.output[-4000:]
    (job,) = runs.Batch(sandbox).jobs_of_run(result.run_id)
    assert job["status"] == "FAILED" and len(job["attempts"]) == 3
