"""Bad input through the real command line: one clear error line, nothing submitted.

Each case runs `snakemake --executor awsbatch` on the sandbox with one thing wrong. The
run must end with exit code 1 and exactly one line `Error: ...` that names what is wrong
(no traceback), before any Batch job exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from snakemake_executor_plugin_awsbatch.sandbox import testing
from tests.e2e import runs

pytestmark = pytest.mark.e2e

SNAKEFILE = """
rule hello:
    output: {output}
    resources: {resources}
    shell: "echo hello > {{output}}"
"""

NO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "",
    "AWS_SECRET_ACCESS_KEY": "",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_EC2_METADATA_DISABLED": "true",
}

NO_REGION = {"AWS_REGION": "", "AWS_DEFAULT_REGION": "", "AWS_CONFIG_FILE": "/nonexistent"}
NO_BUCKET = "s3://no-such-bucket-e2e/x"


@dataclass(frozen=True)
class Case:
    names: str  # what the error line must contain
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    resources: str = "runtime=5"  # of the workflow's one rule
    prefix: str | None = None  # --awsbatch-s3-prefix; None: a fresh one, "": none at all
    output: str = '"hello.txt"'  # of the workflow's one rule
    storage: bool = False  # Snakemake's S3 storage holds the files


CASES = {
    "unknown queue": Case("'nope' does not exist", ("--awsbatch-default-queue", "nope")),
    "missing image": Case("Rule hello has no image", env={"SNAKEMAKE_AWSBATCH_IMAGE": ""}),
    "malformed tags": Case("--awsbatch-tags: 'team'", ("--awsbatch-tags", "team")),
    "malformed efs": Case("--awsbatch-efs: 'fs-1'", ("--awsbatch-efs", "fs-1:/x")),
    "unparseable gpu": Case("Rule hello: resource gpu", resources="gpu='two'"),
    "too big": Case("Rule hello: asks for", resources="mem_mb=900000000"),
    "missing bucket": Case(f"Cannot write to {NO_BUCKET}", prefix=NO_BUCKET),
    "no s3 prefix": Case(
        "--awsbatch-s3-prefix", env={"SNAKEMAKE_AWSBATCH_S3_PREFIX": ""}, prefix=""
    ),
    "no region": Case("No AWS region", env=NO_REGION),
    "no credentials": Case("No AWS credentials", env=NO_CREDENTIALS),
    "'#' in an s3 storage key": Case(
        "reads '#' or '?' in a key", output='"hello #1.txt"', storage=True
    ),
}


def all_jobs(batch: runs.Batch) -> int:
    pages = batch.client.get_paginator("list_jobs")
    return sum(
        len(page["jobSummaryList"])
        for queue in batch.queue_names()
        for status in runs.ALL_STATUSES
        for page in pages.paginate(jobQueue=queue, jobStatus=status)
    )


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input_is_one_error_line_before_any_submission(
    sandbox: testing.RunningSandbox, tmp_path: Path, case: Case
) -> None:
    batch = runs.Batch(sandbox)
    before = all_jobs(batch)
    workdir = tmp_path / "bad"
    snakefile = SNAKEFILE.format(resources=case.resources, output=case.output)
    workflow = runs.Workflow.create(sandbox, workdir, snakefile, storage=case.storage)
    if case.prefix is not None:
        workflow.prefix = case.prefix
    result = workflow.run(*case.args, jobs=1, env=case.env)

    assert result.returncode == 1, result.output[-3000:]
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and case.names in errors[0], result.output[-3000:]
    assert "Traceback" not in result.output and 'File "' not in result.output, result.output
    assert all_jobs(batch) == before
    assert not (workdir / "hello.txt").exists()
