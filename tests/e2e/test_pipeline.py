"""A multi-rule workflow on the sandbox: one container per job, correct outputs, one job
definition for the whole run and the next.

Every job writes `<label> $AWS_BATCH_JOB_ID` lines into its output, so the outputs in S3
say which Batch job produced them; the test matches that with what Batch reports.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from snakemake_executor_plugin_awsbatch.sandbox import testing
from tests.e2e import runs

pytestmark = pytest.mark.e2e

SHARDS = ("a", "b", "c")
OUTPUTS = (
    *(f"results/shards/{shard}.txt" for shard in SHARDS),
    "results/gathered.txt",
    "results/pair/first.txt",
    "results/pair/second.txt",
    "results/script.txt",
)

# scatter (3) -> gather; a group of two rules (one Batch job); a `script:` rule.
SNAKEFILE = """
SHARDS = ["a", "b", "c"]
localrules: all

rule all:
    input: "results/gathered.txt", "results/pair/second.txt", "results/script.txt"

rule scatter:
    output: "results/shards/{shard}.txt"
    shell: 'echo "scatter-{wildcards.shard} $AWS_BATCH_JOB_ID" > {output}'

rule gather:
    input: expand("results/shards/{shard}.txt", shard=SHARDS)
    output: "results/gathered.txt"
    shell: 'cat {input} > {output} && echo "gather $AWS_BATCH_JOB_ID" >> {output}'

rule pair_first:
    output: "results/pair/first.txt"
    group: "pair"
    shell: 'echo "pair_first $AWS_BATCH_JOB_ID" > {output}'

rule pair_second:
    input: "results/pair/first.txt"
    output: "results/pair/second.txt"
    group: "pair"
    shell: 'echo "pair_second $AWS_BATCH_JOB_ID" > {output}'

rule with_script:
    output: "results/script.txt"
    script: "scripts/job_id.py"
"""

SCRIPT = """
import os

with open(snakemake.output[0], "w") as out:
    out.write(f"with_script {os.environ['AWS_BATCH_JOB_ID']}\\n")
"""


@dataclass
class PipelineRun:
    workflow: runs.Workflow
    result: runs.Result
    jobs: list[dict[str, Any]]  # the run's Batch jobs, as described right after it
    outputs: dict[str, str]  # OUTPUTS as read from S3 right after the run


@pytest.fixture(scope="module")
def pipeline(
    sandbox: testing.RunningSandbox, tmp_path_factory: pytest.TempPathFactory
) -> PipelineRun:
    workflow = runs.Workflow.create(
        sandbox,
        tmp_path_factory.mktemp("pipeline"),
        SNAKEFILE,
        {"scripts/job_id.py": SCRIPT},
    )
    result = workflow.run(jobs=6)
    assert result.returncode == 0, result.output[-5000:]
    jobs = runs.Batch(sandbox).jobs_of_run(result.run_id)
    outputs = {path: workflow.read_output(path) for path in OUTPUTS}
    return PipelineRun(workflow, result, jobs, outputs)


def recorded_job_ids(outputs: dict[str, str]) -> dict[str, str]:
    """label -> the $AWS_BATCH_JOB_ID the job that wrote the label had."""
    recorded: dict[str, str] = {}
    for text in outputs.values():
        for line in text.splitlines():
            label, job_id = line.split()
            assert recorded.setdefault(label, job_id) == job_id, (label, outputs)
    return recorded


def test_every_job_ran_in_its_own_batch_job(pipeline: PipelineRun) -> None:
    jobs = pipeline.jobs
    assert {j["status"] for j in jobs} == {"SUCCEEDED"}, [(j["jobName"], j["status"]) for j in jobs]
    # The group is one Batch job carrying both rules; `all` is local and never submitted.
    assert Counter(runs.rule_of(j) for j in jobs) == {
        "scatter": 3,
        "gather": 1,
        "pair_first+pair_second": 1,
        "with_script": 1,
    }
    by_id = {j["jobId"]: j for j in jobs}
    recorded = recorded_job_ids(pipeline.outputs)
    # Six jobs, six distinct Batch job ids, each one a job of this run: every job ran
    # in a container of its own, started by Batch for that job.
    assert len(by_id) == 6
    assert set(recorded.values()) == set(by_id), (recorded, sorted(by_id))
    for label, job_id in recorded.items():
        rule = runs.rule_of(by_id[job_id])
        if label.startswith("pair_"):
            # Both rules of the group ran in the group's one container.
            assert rule == "pair_first+pair_second", (label, rule)
        else:
            assert rule == label.split("-")[0], (label, rule)


def test_outputs_are_correct(pipeline: PipelineRun) -> None:
    recorded = recorded_job_ids(pipeline.outputs)
    shard_lines = [f"scatter-{shard} {recorded[f'scatter-{shard}']}" for shard in SHARDS]
    assert pipeline.outputs["results/gathered.txt"].splitlines() == [
        *shard_lines,
        f"gather {recorded['gather']}",
    ]
    assert pipeline.outputs["results/pair/second.txt"].splitlines() == [
        f"pair_second {recorded['pair_second']}"
    ]
    assert pipeline.outputs["results/script.txt"].startswith("with_script ")


def test_one_job_definition_serves_the_run_and_the_next(
    pipeline: PipelineRun, sandbox: testing.RunningSandbox
) -> None:
    batch = runs.Batch(sandbox)
    used = {runs.definition_of(j) for j in pipeline.jobs}
    # All jobs have the same container shape (image, roles, volumes), hence one definition
    # with one ACTIVE revision.
    assert len(used) == 1, used
    (definition,) = used
    name = definition.split(":")[0]
    assert name.startswith(runs.DEFINITION_PREFIX)
    assert [d for d in batch.active_definitions() if d.split(":")[0] == name] == [definition]

    before = batch.active_definitions()
    again = pipeline.workflow.run("--forcerun", "with_script", jobs=2)
    assert again.returncode == 0, again.output[-5000:]
    rerun_jobs = batch.jobs_of_run(again.run_id)
    assert [runs.rule_of(j) for j in rerun_jobs] == ["with_script"]
    assert runs.definition_of(rerun_jobs[0]) == definition
    # Nothing registered by the second run.
    assert batch.active_definitions() == before
