"""Every job leaves the instance's scratch root as it found it: after success, failure and
timeout (test_cancel.py covers jobs terminated by Ctrl-C).

The scratch root is the host directory the sandbox mounts into every job, as the launch
template's /scratch on AWS. The test sees each job's private directory appear while the
job runs and checks that nothing of the job is left once it ended.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from snakemake_executor_plugin_awsbatch.sandbox import testing
from tests.e2e import runs

pytestmark = pytest.mark.e2e

# `slow` gets runtime=1 (minute), Batch's shortest timeout, and outlives it; the sandbox
# stops a timed-out job as ECS does (SIGTERM, grace, SIGKILL).
SNAKEFILE = """
localrules: all

rule all:
    input: "results/ok.txt", "results/fails.txt", "results/slow.txt"

rule ok:
    output: "results/ok.txt"
    shell: "sleep 5; echo done > {output}"

rule fails:
    output: "results/fails.txt"
    shell: "sleep 5; echo partial > {output}; exit 5"

rule slow:
    output: "results/slow.txt"
    resources: runtime=1
    shell: "sleep 600; echo never > {output}"
"""


def test_scratch_is_removed_after_success_failure_and_timeout(
    sandbox: testing.RunningSandbox, tmp_path: Path
) -> None:
    batch = runs.Batch(sandbox)
    workflow = runs.Workflow.create(sandbox, tmp_path / "scratch", SNAKEFILE)
    snakemake = workflow.start("--keep-going", jobs=3)
    try:
        run_id = snakemake.run_id()
        jobs = runs.poll(
            lambda: (found := batch.jobs_of_run(run_id)) and len(found) == 3 and found,
            90,
            "the run's three jobs",
        )
        ids = [j["jobId"] for j in jobs]
        # While they run, each job has its own scratch directory (and lock file).
        runs.poll(
            lambda: len(runs.scratch_entries(sandbox, ids)) == 6, 60, "three scratch directories"
        )
        snakemake.process.wait(timeout=180)
    finally:
        snakemake.stop()
    output = snakemake.output()
    assert snakemake.process.returncode != 0, output[-3000:]

    by_rule = {runs.rule_of(j): j for j in batch.jobs_of_run(run_id)}
    assert {rule: j["status"] for rule, j in by_rule.items()} == {
        "ok": "SUCCEEDED",
        "fails": "FAILED",
        "slow": "FAILED",
    }
    assert by_rule["slow"]["statusReason"] == "Job attempt duration exceeded timeout"
    # The timed-out job's container gets SIGTERM and a grace period to clean up.
    runs.poll(lambda: not runs.containers_of(sandbox, ids), 60, "the jobs' containers to go")
    assert runs.scratch_entries(sandbox, ids) == []
    assert (workflow.workdir / "results/ok.txt").read_text() == "done\n"
    # The failed job's partial output never comes back.
    assert not (workflow.workdir / "results/fails.txt").exists()
