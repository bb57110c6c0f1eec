"""The example pipeline on the sandbox finds every planted variant, exactly as a local run.

Runs workflows/variant-calling with the `awsbatch` profile, as docs/workflows.md tells
users to (the plugin stages the files through S3 and brings the outputs back); then
compares the outputs with a local run's byte for byte (tests/workflows/variant_calling.py
says which files and why those).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from snakemake_executor_plugin_awsbatch.sandbox import testing
from tests.e2e import runs
from tests.workflows import variant_calling as vc

pytestmark = pytest.mark.e2e

CONFIG = yaml.safe_load((vc.WORKFLOW_DIR / "config" / "config.yaml").read_text())
SAMPLES = sorted(CONFIG["samples"])


def test_variant_calling_on_batch_matches_the_local_run(
    sandbox: testing.RunningSandbox, sandbox_env: dict, tmp_path: Path
) -> None:
    local = vc.run_local_pipeline(tmp_path / "local")
    workdir = vc.copy_workflow(tmp_path / "variant-calling")
    workflow = runs.Workflow.at(sandbox, workdir)
    # The profile's own settings, but no retry: a job that fails once is a bug to see here.
    result = vc.run_snakemake(
        workdir,
        "awsbatch",
        "--jobs",
        "5",
        "--retries",
        "0",
        "--seconds-between-status-checks",
        "2",
        *workflow.location_args(),
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]

    jobs = runs.Batch(sandbox).jobs_of_run(runs.run_id_in(output))
    assert jobs and {j["status"] for j in jobs} == {"SUCCEEDED"}
    # awsbatch_queue="priority" sends call_variants, and only it, to the priority queue.
    queues = {runs.rule_of(j): runs.queue_of(j) for j in jobs}
    assert queues.pop("call_variants") == sandbox_env["SNAKEMAKE_AWSBATCH_PRIORITY_QUEUE"]
    assert set(queues.values()) == {sandbox_env["SNAKEMAKE_AWSBATCH_DEFAULT_QUEUE"]}

    report = json.loads((workdir / "results/report/summary.json").read_text())["samples"]
    assert sorted(report) == SAMPLES
    for sample, metrics in report.items():
        assert (metrics["precision"], metrics["recall"]) == (1.0, 1.0), (sample, metrics)
    assert "missing" not in vc.fingerprint(local).values()
    assert vc.fingerprint(workdir) == vc.fingerprint(local)
