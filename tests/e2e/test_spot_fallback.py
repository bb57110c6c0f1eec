"""A job whose spot instance is reclaimed moves to the priority queue, and the run succeeds.

The sandbox's moto makes no retry attempts, so a reclaim there is a job terminated with the
status reason AWS gives a reclaimed job: to the plugin, that job was reclaimed on every
attempt it had.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from snakemake_executor_plugin_awsbatch.sandbox import testing
from tests.e2e import runs

pytestmark = pytest.mark.e2e

RECLAIM_REASON = "Host EC2 (instance i-0123456789abcdef0) terminated."

# The scratch root is the same host directory in every job, so the test can tell the rule
# when it runs for the first time (touch `started`, then wait to be reclaimed) and when it
# is the resubmission (`reclaimed` exists: finish at once).
SNAKEFILE = """
localrules: all

rule all:
    input: "results/survivor.txt"

rule survivor:
    output: "results/survivor.txt"
    shell:
        "if [ ! -e {MARKERS}/reclaimed ]; then touch {MARKERS}/started; sleep 120; fi; "
        "echo $AWS_BATCH_JOB_ID > {output}"
"""


def test_reclaimed_job_is_resubmitted_to_the_priority_queue(
    sandbox: testing.RunningSandbox, tmp_path: Path
) -> None:
    markers = sandbox.scratch_dir / f"e2e-spot-{uuid.uuid4().hex[:8]}"
    markers.mkdir()
    batch = runs.Batch(sandbox)
    default_queue = sandbox.env["SNAKEMAKE_AWSBATCH_DEFAULT_QUEUE"]
    priority_queue = sandbox.env["SNAKEMAKE_AWSBATCH_PRIORITY_QUEUE"]
    workflow = runs.Workflow.create(
        sandbox, tmp_path / "spot", SNAKEFILE.replace("{MARKERS}", str(markers))
    )
    snakemake = workflow.start(jobs=1)
    try:
        run_id = snakemake.run_id()
        runs.poll(lambda: (markers / "started").exists(), 90, "the job's command to start")
        (first,) = batch.jobs_of_run(run_id)
        assert (runs.queue_of(first), first["status"]) == (default_queue, "RUNNING")
        (markers / "reclaimed").touch()
        batch.client.terminate_job(jobId=first["jobId"], reason=RECLAIM_REASON)
        snakemake.process.wait(timeout=120)
    finally:
        snakemake.stop()
    output = snakemake.output()
    assert snakemake.process.returncode == 0, output[-5000:]

    jobs = batch.jobs_of_run(run_id)
    assert [(runs.queue_of(j), runs.rule_of(j), j["status"]) for j in jobs] == [
        (default_queue, "survivor", "FAILED"),
        (priority_queue, "survivor", "SUCCEEDED"),
    ]
    assert jobs[0]["statusReason"] == RECLAIM_REASON
    # The output is the resubmitted job's work.
    assert workflow.read_output("results/survivor.txt").strip() == jobs[1]["jobId"]
