"""The run report at the end of a run: per rule, what Batch reported, and what it cost.

One run on the sandbox with a spot reclaim (the job moves to the priority queue), a
failing rule and two jobs that succeed, with prices given. The report's figures are
checked against DescribeJobs of the same jobs, and its costs against the prices and the
capacity of each job's queue (the stack's default queue is spot, the priority queue
on-demand first). Ctrl-C's report is checked in test_cancel.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from snakemake_executor_plugin_awsbatch.sandbox import testing
from tests.e2e import runs

pytestmark = pytest.mark.e2e

PRICES = {
    "spot-vcpu-hour": 0.0125,
    "spot-gib-hour": 0.0016,
    "on-demand-vcpu-hour": 0.0404,
    "on-demand-gib-hour": 0.0051,
}

# survivor waits on the default (spot) queue to be reclaimed; on the priority queue it
# finishes. fine runs twice with 2 vCPUs; broken fails.
SNAKEFILE = """
localrules: all

rule all:
    input: "results/survivor.txt", expand("results/fine/{i}.txt", i=range(2)), "results/broken.txt"

rule survivor:
    output: "results/survivor.txt"
    shell:
        'if [ "$AWS_BATCH_JQ_NAME" = "{DEFAULT}" ]; then sleep 120; fi; '
        "sleep 1; echo $AWS_BATCH_JQ_NAME > {output}"

rule fine:
    output: "results/fine/{i}.txt"
    threads: 2
    resources: mem_mb=512
    shell: "sleep 2; echo {wildcards.i} > {output}"

rule broken:
    output: "results/broken.txt"
    shell: "echo going wrong >&2; exit 3"
"""


def test_the_report_adds_up_what_batch_reported(
    sandbox: testing.RunningSandbox, tmp_path: Path
) -> None:
    batch = runs.Batch(sandbox)
    default_queue = sandbox.env["SNAKEMAKE_AWSBATCH_DEFAULT_QUEUE"]
    workflow = runs.Workflow.create(
        sandbox, tmp_path / "report", SNAKEFILE.replace("{DEFAULT}", default_queue)
    )
    prices = [f"{key}={value}" for key, value in PRICES.items()]
    snakemake = workflow.start("--keep-going", "--awsbatch-prices", *prices, jobs=4)
    try:
        run_id = snakemake.run_id()

        def survivor_running() -> list[dict[str, Any]] | None:
            jobs = batch.jobs_of_run(run_id)
            found = [j for j in jobs if runs.rule_of(j) == "survivor" and j["status"] == "RUNNING"]
            return found or None

        (first,) = runs.poll(survivor_running, 90, "survivor to run")
        runs.reclaim(sandbox, batch, first["jobId"])
        snakemake.process.wait(timeout=180)
    finally:
        snakemake.stop()
    output = snakemake.output()
    assert snakemake.process.returncode != 0, output[-5000:]  # broken failed

    report = json.loads((workflow.workdir / f".snakemake/awsbatch/run-{run_id}.json").read_text())
    rules = report["rules"]
    assert sorted(rules) == ["broken", "fine", "survivor"]
    counts = ("jobs", "attempts", "spot_reclaims", "moved_to_priority", "failed", "unfinished")
    assert [rules["survivor"][c] for c in counts] == [2, 2, 1, 1, 0, 0]
    assert [rules["fine"][c] for c in counts] == [2, 2, 0, 0, 0, 0]
    assert [rules["broken"][c] for c in counts] == [1, 1, 0, 0, 1, 0]
    assert report["total"]["jobs"] == 5 and report["total"]["failed"] == 1

    # Every job's figures are Batch's: one attempt each, from startedAt to stoppedAt.
    described = {j["jobId"]: j for j in batch.jobs_of_run(run_id)}
    assert sorted(j["job_id"] for j in report["jobs"]) == sorted(described)
    capacity = _capacities(batch)
    expected_cost: dict[str, float] = {}
    for job in report["jobs"]:
        detail = described[job["job_id"]]
        assert job["running_seconds"] == pytest.approx(
            (detail["stoppedAt"] - detail["startedAt"]) / 1000, abs=0.002
        )
        assert job["queued_seconds"] == pytest.approx(
            (detail["startedAt"] - detail["createdAt"]) / 1000, abs=0.002
        )
        hours = job["running_seconds"] / 3600
        assert job["vcpu_hours"] == pytest.approx(job["vcpus"] * hours)
        assert job["gib_hours"] == pytest.approx(job["memory_mib"] / 1024 * hours)
        assert job["capacity"] == capacity[runs.queue_of(detail)]
        rate = {k.removeprefix(job["capacity"] + "-"): v for k, v in PRICES.items()}
        cost = job["vcpu_hours"] * rate["vcpu-hour"] + job["gib_hours"] * rate["gib-hour"]
        assert job["cost"] == pytest.approx(cost)
        expected_cost[job["rule"]] = expected_cost.get(job["rule"], 0.0) + cost
    fine = [j for j in report["jobs"] if j["rule"] == "fine"]
    assert all(j["vcpus"] == 2 and j["running_seconds"] >= 2 for j in fine), fine
    survivor = sorted(
        (j for j in report["jobs"] if j["rule"] == "survivor"), key=_created(described)
    )
    assert [(j["capacity"], j["outcome"], j["moved"]) for j in survivor] == [
        ("spot", "moved", False),
        ("on-demand", "succeeded", True),
    ]
    for rule, cost in expected_cost.items():
        assert rules[rule]["cost"] == pytest.approx(cost)
    assert report["staging"]["uploaded_files"] >= 1

    # The table in the log: one row per rule and the totals, with the estimated cost.
    table = output[output.index(f"AWS Batch run {run_id}, per rule") :]
    rows = {line.split()[0]: line.split() for line in table.splitlines()[2:6]}
    assert sorted(rows) == ["broken", "fine", "survivor", "total"], table
    assert rows["survivor"][1:6] == ["2", "2", "1", "1", "0"], table
    assert rows["total"][-1] == f"{report['total']['cost']:.4f}", table
    assert "est. cost" in table


def _capacities(batch: runs.Batch) -> dict[str, str]:
    """Each queue's capacity as its first compute environment provides it."""
    kinds = {
        env["computeEnvironmentArn"]: env["computeResources"]["type"]
        for env in batch.client.describe_compute_environments()["computeEnvironments"]
    }
    capacity = {}
    for queue in batch.client.describe_job_queues()["jobQueues"]:
        first = min(queue["computeEnvironmentOrder"], key=lambda ce: ce["order"])
        kind = kinds[first["computeEnvironment"]]
        capacity[queue["jobQueueName"]] = "spot" if kind.endswith("SPOT") else "on-demand"
    return capacity


def _created(described: dict[str, dict[str, Any]]) -> Any:
    return lambda job: described[job["job_id"]]["createdAt"]
