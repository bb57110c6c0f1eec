"""Array jobs on the sandbox: alike jobs handed over together run as the children of one
Batch array job, each child a real container running its own Snakemake job; a reclaimed
child alone moves to the priority queue."""

from __future__ import annotations

from pathlib import Path

import pytest

from snakemake_executor_plugin_awsbatch.sandbox import testing
from tests.e2e import runs

pytestmark = pytest.mark.e2e

N = 6
SNAKEFILE = f"""
localrules: all
rule all:
    input: "results/gathered.txt"

rule scatter:
    output: "results/scattered/{{i}}.txt"
    shell:
        'echo "{{wildcards.i}} $AWS_BATCH_JOB_ID ${{{{AWS_BATCH_JOB_ARRAY_INDEX:-}}}}" '
        "> {{output}}"

rule gather:
    input: expand("results/scattered/{{i}}.txt", i=range({N}))
    output: "results/gathered.txt"
    shell: "cat {{input}} > {{output}}"
"""


def _lines(workflow: runs.Workflow) -> list[list[str]]:
    return [line.split() for line in workflow.read_output("results/gathered.txt").splitlines()]


def test_alike_jobs_run_as_the_children_of_one_array_job(
    sandbox: testing.RunningSandbox, tmp_path: Path
) -> None:
    workflow = runs.Workflow.create(sandbox, tmp_path / "arrays", SNAKEFILE)
    result = workflow.run(jobs=N)
    assert result.returncode == 0, result.output[-5000:]

    batch = runs.Batch(sandbox)
    jobs = batch.jobs_of_run(result.run_id)
    scatter = [j for j in jobs if runs.rule_of(j) == "scatter"]
    (array,) = batch.arrays_of_run(result.run_id)
    assert array["arrayProperties"]["size"] == N and array["status"] == "SUCCEEDED"
    assert sorted(j["jobId"] for j in scatter) == [f"{array['jobId']}:{i}" for i in range(N)]
    assert [runs.rule_of(j) for j in jobs if j not in scatter] == ["gather"]
    # Each Snakemake job ran in its own child, which found its own job by its index.
    lines = _lines(workflow)
    assert [line[0] for line in lines] == [str(i) for i in range(N)]
    assert len({line[1] for line in lines}) == N
    assert all(line[1] == f"{array['jobId']}:{line[2]}" for line in lines)
    assert {j["status"] for j in jobs} == {"SUCCEEDED"}


def test_no_arrays_submits_a_batch_job_per_snakemake_job(
    sandbox: testing.RunningSandbox, tmp_path: Path
) -> None:
    workflow = runs.Workflow.create(sandbox, tmp_path / "single", SNAKEFILE)
    result = workflow.run("--awsbatch-no-arrays", jobs=N)
    assert result.returncode == 0, result.output[-5000:]

    batch = runs.Batch(sandbox)
    assert batch.arrays_of_run(result.run_id) == []
    assert len(batch.jobs_of_run(result.run_id)) == N + 1
    assert all(line[2:] == [] for line in _lines(workflow))  # no array index anywhere


# Child 1 waits on the default (spot) queue to be "reclaimed"; on the priority queue, and
# for every other child, the job ends at once.
RECLAIM_SNAKEFILE = """
localrules: all
rule all:
    input: expand("results/{i}.txt", i=range(3))

rule work:
    output: "results/{i}.txt"
    shell:
        'if [ "$AWS_BATCH_JQ_NAME" = "{DEFAULT}" ] && [ {wildcards.i} = 1 ]; then sleep 120; fi; '
        'echo "$AWS_BATCH_JOB_ID $AWS_BATCH_JQ_NAME" > {output}'
"""


def test_a_reclaimed_child_alone_moves_to_the_priority_queue(
    sandbox: testing.RunningSandbox, tmp_path: Path
) -> None:
    batch = runs.Batch(sandbox)
    default_queue = sandbox.env["SNAKEMAKE_AWSBATCH_DEFAULT_QUEUE"]
    priority_queue = sandbox.env["SNAKEMAKE_AWSBATCH_PRIORITY_QUEUE"]
    snakefile = RECLAIM_SNAKEFILE.replace("{DEFAULT}", default_queue)
    workflow = runs.Workflow.create(sandbox, tmp_path / "reclaim", snakefile)
    snakemake = workflow.start(jobs=3)
    try:
        run_id = snakemake.run_id()

        def waiting_child() -> dict | None:
            jobs = batch.jobs_of_run(run_id)
            done = [j for j in jobs if j["status"] == "SUCCEEDED"]
            running = [j for j in jobs if j["status"] == "RUNNING"]
            return running[0] if len(done) == 2 and len(running) == 1 else None

        child = runs.poll(waiting_child, 120, "two children done and one running")
        # The child of wildcard i=1 (Snakemake orders a round's jobs as it likes).
        assert runs.runs_parent(child["jobId"]), child["jobId"]
        runs.reclaim(sandbox, batch, child["jobId"])
        snakemake.process.wait(timeout=120)
    finally:
        snakemake.stop()
    assert snakemake.process.returncode == 0, snakemake.output()[-5000:]

    jobs = {j["jobId"]: j for j in batch.jobs_of_run(run_id)}
    moved = [j for j in jobs.values() if runs.queue_of(j) == priority_queue]
    assert [j["status"] for j in moved] == ["SUCCEEDED"]
    assert jobs[child["jobId"]]["status"] == "FAILED"
    assert jobs[child["jobId"]]["statusReason"] == runs.RECLAIM_REASON
    siblings = [j for i, j in jobs.items() if runs.runs_parent(i) and i != child["jobId"]]
    assert [(runs.queue_of(j), j["status"]) for j in siblings] == [(default_queue, "SUCCEEDED")] * 2
    assert workflow.read_output("results/1.txt").split() == [moved[0]["jobId"], priority_queue]
