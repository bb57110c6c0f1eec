"""Jobs on one instance share its input cache: an input three jobs read is downloaded once.

The sandbox is one instance: every job container mounts its scratch root, as the
containers of one EC2 instance mount the host's /scratch. The runners' own log lines
(in CloudWatch) say what each one downloaded and what it linked from the cache.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from snakemake_executor_plugin_awsbatch.jobside.cache import CACHE_DIR
from snakemake_executor_plugin_awsbatch.sandbox import testing
from tests.e2e import runs

pytestmark = pytest.mark.e2e

SNAKEFILE = """
localrules: all

rule all:
    input: expand("results/{i}.txt", i=range(3))

rule read:
    input: "data/ref.bin"
    output: "results/{i}.txt"
    shell: "sha256sum {input} > {output}"
"""
SIZE = 5_000_000
CACHE_LINE = re.compile(
    r"input cache: (\d+) hits? \(([\d.]+) MB linked\), (\d+) files? \(([\d.]+) MB\) "
    r"downloaded into the cache"
)


def cache_line(sandbox: testing.RunningSandbox, job: dict) -> tuple[int, int] | None:
    """(hits, files downloaded into the cache) from the job's runner log, once it is in
    CloudWatch (the sandbox collects a container's log when it ends)."""
    try:
        events = (
            sandbox.session()
            .client("logs")
            .get_log_events(
                logGroupName="/aws/batch/job",
                logStreamName=job["container"]["logStreamName"],
                startFromHead=True,
            )["events"]
        )
    except ClientError:
        return None
    found = [m for e in events if (m := CACHE_LINE.search(e["message"]))]
    return (int(found[0][1]), int(found[0][3])) if found else None


def cache_lines(sandbox: testing.RunningSandbox, jobs: list[dict]) -> list[tuple[int, int]]:
    """Every job's cache line, or [] while one of them is not logged yet."""
    found = [cache_line(sandbox, job) for job in jobs]
    return [line for line in found if line is not None] if all(found) else []


def test_three_jobs_reading_one_input_download_it_once(
    sandbox: testing.RunningSandbox, tmp_path: Path
) -> None:
    body = os.urandom(SIZE)
    workflow = runs.Workflow.create(sandbox, tmp_path / "cache", SNAKEFILE)
    (workflow.workdir / "data").mkdir()
    (workflow.workdir / "data" / "ref.bin").write_bytes(body)

    result = workflow.run(jobs=3)

    assert result.returncode == 0, result.output[-3000:]
    digest = hashlib.sha256(body).hexdigest()
    for i in range(3):
        assert workflow.read_output(f"results/{i}.txt").split()[0] == digest
    jobs = runs.Batch(sandbox).jobs_of_run(result.run_id)
    assert len(jobs) == 3
    lines = runs.poll(lambda: cache_lines(sandbox, jobs), 60, "the three runners' logs")
    assert sorted(downloaded for _, downloaded in lines) == [0, 0, 1]
    assert sum(hits for hits, _ in lines) == 2
    # The entry stays on the instance for the next job; nothing of the jobs does.
    assert (sandbox.scratch_dir / CACHE_DIR / "sha256" / digest).stat().st_size == SIZE
    assert runs.scratch_entries(sandbox, [j["jobId"] for j in jobs]) == []
