"""A job whose spot instance is reclaimed moves to the priority queue, and the run succeeds.

The sandbox's moto makes no retry attempts, so a reclaim there is a job terminated with the
status reason AWS gives a reclaimed job: to the plugin, that job was reclaimed on every
attempt it had.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from snakemake_executor_plugin_awsbatch.sandbox import testing
from tests.e2e import runs

pytestmark = pytest.mark.e2e


# On the default (spot) queue the job waits to be reclaimed; resubmitted to the priority
# queue it finishes at once. AWS_BATCH_JQ_NAME is the queue Batch runs the job from.
SNAKEFILE = """
localrules: all

rule all:
    input: "results/survivor.txt"

rule survivor:
    output: "results/survivor.txt"
    shell:
        'if [ "$AWS_BATCH_JQ_NAME" = "{DEFAULT}" ]; then sleep 120; fi; '
        "echo $AWS_BATCH_JOB_ID $AWS_BATCH_JQ_NAME > {output}"
"""


def test_reclaimed_job_is_resubmitted_to_the_priority_queue(
    sandbox: testing.RunningSandbox, tmp_path: Path
) -> None:
    batch = runs.Batch(sandbox)
    default_queue = sandbox.env["SNAKEMAKE_AWSBATCH_DEFAULT_QUEUE"]
    priority_queue = sandbox.env["SNAKEMAKE_AWSBATCH_PRIORITY_QUEUE"]
    workflow = runs.Workflow.create(
        sandbox, tmp_path / "spot", SNAKEFILE.replace("{DEFAULT}", default_queue)
    )
    snakemake = workflow.start(jobs=1)
    try:
        run_id = snakemake.run_id()
        (first,) = runs.poll(
            lambda: [j for j in batch.jobs_of_run(run_id) if j["status"] == "RUNNING"],
            90,
            "the job to run",
        )
        assert runs.queue_of(first) == default_queue
        runs.reclaim(sandbox, batch, first["jobId"])
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
    assert jobs[0]["statusReason"] == runs.RECLAIM_REASON
    # The output is the resubmitted job's work, done on the priority queue.
    assert workflow.read_output("results/survivor.txt").split() == [
        jobs[1]["jobId"],
        priority_queue,
    ]
