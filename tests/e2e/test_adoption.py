"""Snakemake killed with SIGKILL mid-run, then started again in the same directory: the new
run follows the jobs the dead one left instead of submitting them again, ends those it
does not need, and Ctrl-C of the new run still ends them all."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from snakemake_executor_plugin_awsbatch.sandbox import testing
from tests.e2e import runs

pytestmark = pytest.mark.e2e

N = 4
SNAKEFILE = f"""
localrules: all
rule all:
    input: expand("results/{{i}}.txt", i=range({N}))

rule work:
    output: "results/{{i}}.txt"
    shell: "sleep $(( 15 + {{wildcards.i}} )); echo $AWS_BATCH_JOB_ID > {{output}}"
"""


def _kill_while_running(workflow: runs.Workflow, batch: runs.Batch) -> tuple[str, list[dict]]:
    """Start the run, SIGKILL Snakemake once all its jobs run; -> run id and its jobs."""
    first = workflow.start(jobs=N)
    try:
        run_id = first.run_id()

        def all_running() -> list[dict] | None:
            jobs = batch.jobs_of_run(run_id)
            return jobs if len(jobs) == N and {j["status"] for j in jobs} == {"RUNNING"} else None

        jobs = runs.poll(all_running, 120, f"{N} running jobs")
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=30)
    finally:
        first.stop()
    # What Snakemake itself asks for after a killed run (docs/scale.md).
    subprocess.run(
        [sys.executable, "-m", "snakemake", "--unlock"],
        cwd=workflow.workdir,
        env=workflow.environment(),
        check=True,
        capture_output=True,
    )
    return run_id, jobs


def test_a_restart_follows_the_jobs_the_killed_run_left(
    sandbox: testing.RunningSandbox, tmp_path: Path
) -> None:
    batch = runs.Batch(sandbox)
    workflow = runs.Workflow.create(sandbox, tmp_path / "adopt", SNAKEFILE)
    dead_run, left = _kill_while_running(workflow, batch)

    again = workflow.run(jobs=N)

    assert again.returncode == 0, again.output[-5000:]
    assert again.output.count("instead of submitting it again") == N
    assert batch.jobs_of_run(again.run_id) == []  # nothing submitted a second time
    ids = sorted(j["jobId"] for j in left)
    assert sorted(j["jobId"] for j in batch.jobs_of_run(dead_run)) == ids
    assert {batch.job(i)["status"] for i in ids} == {"SUCCEEDED"}
    # The outputs are the dead run's jobs' work, fetched by the new run.
    assert sorted(workflow.read_output(f"results/{i}.txt").strip() for i in range(N)) == ids
    records = [k for k in workflow.s3_objects() if k.startswith("_awsbatch/runs/")]
    assert records == [], (records, dead_run, again.run_id)  # both runs' records are gone


def test_a_restart_ends_the_jobs_it_does_not_need(
    sandbox: testing.RunningSandbox, tmp_path: Path
) -> None:
    batch = runs.Batch(sandbox)
    workflow = runs.Workflow.create(sandbox, tmp_path / "unneeded", SNAKEFILE)
    dead_run, _ = _kill_while_running(workflow, batch)

    # The user now wants only two of the outputs.
    again = workflow.run("results/0.txt", "results/1.txt", jobs=N)

    assert again.returncode == 0, again.output[-5000:]
    assert batch.jobs_of_run(again.run_id) == []
    by_output = {j["jobId"]: j for j in batch.jobs_of_run(dead_run)}
    needed = {workflow.read_output(f"results/{i}.txt").strip() for i in (0, 1)}
    for job_id, job in by_output.items():
        if job_id in needed:
            assert job["status"] == "SUCCEEDED"
        else:
            assert job["status"] == "FAILED"
            assert again.run_id in job["statusReason"] and "not needed" in job["statusReason"]
    assert len(needed) == 2 and len(by_output) == N


def test_ctrl_c_of_the_restart_ends_the_jobs_it_follows(
    sandbox: testing.RunningSandbox, tmp_path: Path
) -> None:
    batch = runs.Batch(sandbox)
    workflow = runs.Workflow.create(
        sandbox,
        tmp_path / "cancel",
        SNAKEFILE.replace("sleep $(( 15 +", "sleep $(( 120 +"),
    )
    _, left = _kill_while_running(workflow, batch)

    again = workflow.start(jobs=N)
    try:
        runs.poll(
            lambda: again.output().count("instead of submitting it again") == N,
            60,
            "the restart to follow every job",
        )
        again.interrupt()
        again.process.wait(timeout=60)
    finally:
        again.stop()

    def stopped() -> list[dict] | None:
        jobs = [batch.job(j["jobId"]) for j in left]
        return jobs if {j["status"] for j in jobs} == {"FAILED"} else None

    for job in runs.poll(stopped, 60, "the followed jobs to stop"):
        assert "cancelled" in job["statusReason"], job["statusReason"]
    ids = [j["jobId"] for j in left]
    runs.poll(lambda: not runs.containers_of(sandbox, ids), 60, "their containers to go")
