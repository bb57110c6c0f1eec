"""30 % of Batch and S3 calls fail, for the submitting side and inside the jobs: the run
completes with the outputs of a clean run, and no Snakemake job runs twice.

A fault-injecting proxy stands in front of the sandbox's endpoint, for the submitting
Snakemake (AWS_ENDPOINT_URL) and for the jobs (the same variable, passed to them with
Snakemake's --envvars); the job-side runner's User-Agent tells its calls apart.
"reject": the call fails before it reaches Batch or S3 (throttling, 500, 503). "lose":
moto does the work and the answer is a 500, which is what made botocore's retries of
SubmitJob create duplicate jobs.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from snakemake_executor_plugin_awsbatch.sandbox import testing
from snakemake_executor_plugin_awsbatch.sandbox.proxy import Faults, Proxy
from snakemake_executor_plugin_awsbatch.transfer.client import RUNNER_AGENT
from tests.e2e import runs

pytestmark = pytest.mark.e2e

N = 12
SNAKEFILE = f"""
localrules: all
rule all:
    input: "results/gathered.txt"

rule scatter:
    input: "data/shared.txt"
    output: "results/scattered/{{i}}.txt"
    shell: "sha256sum {{input}} > {{output}} && echo {{wildcards.i}} >> {{output}}"

rule gather:
    input: expand("results/scattered/{{i}}.txt", i=range({N}))
    output: "results/gathered.txt"
    shell: "cat {{input}} > {{output}}"
"""
FILES = {"data/shared.txt": "the same input for every job\n"}


def _local_result(tmp_path: Path) -> str:
    workdir = tmp_path / "local"
    workdir.mkdir()
    (workdir / "Snakefile").write_text(SNAKEFILE)
    for name, text in FILES.items():
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / name).write_text(text)
    subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2"],
        cwd=workdir,
        check=True,
        capture_output=True,
    )
    return (workdir / "results/gathered.txt").read_text()


@pytest.mark.parametrize("mode", ["reject", "lose"])
def test_a_run_through_thirty_percent_failing_calls(
    sandbox: testing.RunningSandbox, tmp_path: Path, mode: str
) -> None:
    upstream = sandbox.env["AWS_ENDPOINT_URL"]
    workflow = runs.Workflow.create(sandbox, tmp_path / mode, SNAKEFILE, FILES)
    faults = Faults(rate=0.3, mode=mode, seed=1)
    with Proxy(upstream, faults=faults, agents=[RUNNER_AGENT]) as proxy:
        result = workflow.run(
            "--envvars",
            "AWS_ENDPOINT_URL",
            jobs=8,
            timeout=600,
            env={"AWS_ENDPOINT_URL": proxy.url},
        )
        stats = proxy.stats()
    assert result.returncode == 0, result.output[-6000:]
    assert workflow.read_output("results/gathered.txt") == _local_result(tmp_path)

    # The faults hit Batch and S3, the submitting side and the jobs alike.
    failed, job_failed = stats["faults"], stats["agents"][RUNNER_AGENT]["faults"]
    assert sum(v for k, v in failed.items() if k.startswith("batch:")) > 0, failed
    assert sum(v for k, v in failed.items() if k.startswith("s3:")) > 0, failed
    assert sum(job_failed.values()) > 0, job_failed
    assert sum(job_failed.values()) < sum(failed.values())

    # Every Snakemake job ran exactly once: one Batch job (or array child) each.
    jobs = runs.Batch(sandbox).jobs_of_run(result.run_id)
    assert Counter(runs.rule_of(j) for j in jobs) == {"scatter": N, "gather": 1}
    assert {j["status"] for j in jobs} == {"SUCCEEDED"}
