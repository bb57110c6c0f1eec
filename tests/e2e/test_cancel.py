"""Ctrl-C: Snakemake stops promptly and takes its Batch jobs, their containers and their
scratch directories with it, and still writes its run report."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from snakemake_executor_plugin_awsbatch.sandbox import testing
from tests.e2e import runs

pytestmark = pytest.mark.e2e

# Three jobs that would outlive the test by far if Ctrl-C left them running.
SNAKEFILE = """
localrules: all

rule all:
    input: expand("results/slept/{i}.txt", i=range(3))

rule sleep:
    output: "results/slept/{i}.txt"
    shell: "sleep 120 && touch {output}"
"""


def test_ctrl_c_terminates_every_job_of_the_run(
    sandbox: testing.RunningSandbox, tmp_path: Path
) -> None:
    batch = runs.Batch(sandbox)
    workflow = runs.Workflow.create(sandbox, tmp_path / "cancel", SNAKEFILE)
    snakemake = workflow.start(jobs=3)
    try:
        run_id = snakemake.run_id()

        def all_running() -> list[dict] | None:
            jobs = batch.jobs_of_run(run_id)
            return jobs if len(jobs) == 3 and {j["status"] for j in jobs} == {"RUNNING"} else None

        jobs = runs.poll(all_running, 90, "3 RUNNING jobs")
        ids = [j["jobId"] for j in jobs]
        # moto marks a job RUNNING just before it starts the container; wait for all three
        # so the check that they are gone below means something.
        runs.poll(
            lambda: len(runs.containers_of(sandbox, ids)) == 3, 30, "a container for each job"
        )
        # Each job works in its own scratch directory (plus its lock file).
        runs.poll(
            lambda: len(runs.scratch_entries(sandbox, ids)) == 6, 30, "three scratch directories"
        )
        snakemake.interrupt()
        try:
            snakemake.process.wait(timeout=30)
        except subprocess.TimeoutExpired as e:
            raise AssertionError("Snakemake still runs 30 s after Ctrl-C") from e
    finally:
        snakemake.stop()
    output = snakemake.output()
    assert snakemake.process.returncode != 0, output[-3000:]

    def all_stopped() -> list[dict] | None:
        # Every job of the run in any queue, in case something was submitted after the poll.
        now = batch.jobs_of_run(run_id)
        return now if not {j["status"] for j in now} & set(runs.ACTIVE_STATUSES) else None

    stopped = runs.poll(all_stopped, 30, "the run's jobs to stop")
    assert sorted(j["jobId"] for j in stopped) == sorted(ids)
    for job in stopped:
        reason = job.get("statusReason") or ""
        assert run_id in reason and "cancelled" in reason, (job["jobName"], reason)
    # The containers go too (the sandbox stops them as ECS would: SIGTERM, grace, SIGKILL).
    runs.poll(lambda: not runs.containers_of(sandbox, ids), 30, "the jobs' containers to go")
    # The runner got SIGTERM, stopped the command and removed the scratch directory.
    assert runs.scratch_entries(sandbox, ids) == []
    # The run report says what the interrupted jobs used, as far as they got.
    report = json.loads((workflow.workdir / f".snakemake/awsbatch/run-{run_id}.json").read_text())
    assert sorted(j["job_id"] for j in report["jobs"]) == sorted(ids)
    assert [j["outcome"] for j in report["jobs"]] == ["cancelled"] * 3
    assert report["total"]["unfinished"] == 3 and report["total"]["attempts"] == 3
    assert all(j["running_seconds"] > 0 for j in report["jobs"]), report["jobs"]
    assert f"AWS Batch run {run_id}, per rule" in output
