"""A Snakemake workflow on the sandbox configured by `--awsbatch-stack` alone.

The sandbox's Batch environment is the CloudFormation deployment of cloudformation/, so
the queues and the S3 prefix come from the stack's outputs, as they would on AWS: the test
removes them from the environment and keeps only what a stack does not supply (the image,
and the sandbox's host scratch directory).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from snakemake_executor_plugin_awsbatch.sandbox import exports
from snakemake_executor_plugin_awsbatch.stack import read_stack_outputs

pytestmark = pytest.mark.e2e

# `hello` goes to the stack's default queue, `upper` (by its resource) to the priority queue.
SNAKEFILE = """
rule all:
    input:
        "upper.txt",

rule hello:
    output:
        "hello.txt",
    resources:
        mem_mb=256,
        runtime=5,
    shell:
        "echo hello from the stack > {output}"

rule upper:
    input:
        "hello.txt",
    output:
        "upper.txt",
    resources:
        mem_mb=256,
        runtime=5,
        awsbatch_queue="priority",
    shell:
        "tr a-z A-Z < {input} > {output}"
"""
SUPPLIED_BY_THE_STACK = (
    "SNAKEMAKE_AWSBATCH_DEFAULT_QUEUE",
    "SNAKEMAKE_AWSBATCH_PRIORITY_QUEUE",
    "SNAKEMAKE_AWSBATCH_S3_PREFIX",
)


def test_workflow_runs_on_the_stacks_queues_with_only_the_stack_name(sandbox, tmp_path):
    session = sandbox.session()
    batch, s3 = session.client("batch"), session.client("s3")
    stack = read_stack_outputs(session.client("cloudformation"), sandbox.stack_name)
    queues = (stack.default_queue, stack.priority_queue)
    before = {queue: _succeeded(batch, queue) for queue in queues}
    key_prefix = f"e2e-stack/{uuid.uuid4().hex}"
    (tmp_path / "Snakefile").write_text(SNAKEFILE)

    result = _snakemake(
        tmp_path,
        _environment_without_stack_settings(sandbox.env),
        "--awsbatch-stack",
        sandbox.stack_name,
        "--default-storage-prefix",
        f"s3://{stack.bucket}/{key_prefix}",
    )

    assert result.returncode == 0, result.stderr[-3000:]
    body = s3.get_object(Bucket=stack.bucket, Key=f"{key_prefix}/upper.txt")["Body"].read()
    assert body == b"HELLO FROM THE STACK\n"
    # Other tests share the sandbox and its queues: only the jobs new since `before` count.
    ran = {
        queue: {i: name for i, name in _succeeded(batch, queue).items() if i not in before[queue]}
        for queue in queues
    }
    assert [_rule(name) for name in ran[stack.default_queue].values()] == ["hello"]
    assert [_rule(name) for name in ran[stack.priority_queue].values()] == ["upper"]
    # The job role came from the stack too.
    for job_id in (*ran[stack.default_queue], *ran[stack.priority_queue]):
        assert _job_role(batch, job_id) == stack.job_role_arn


def _environment_without_stack_settings(sandbox_env: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **sandbox_env}
    for name in (*SUPPLIED_BY_THE_STACK, *exports.UNSET):
        env.pop(name, None)
    return env


def _snakemake(workdir: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    argv = [
        *(sys.executable, "-m", "snakemake", "--executor", "awsbatch", "--jobs", "2"),
        *("--default-storage-provider", "s3"),
        # The default 10 s between status checks would make up most of the test's time.
        *("--seconds-between-status-checks", "1"),
        *args,
    ]
    return subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)


def _succeeded(batch, queue: str) -> dict[str, str]:
    """job id -> job name of the queue's SUCCEEDED jobs."""
    pages = batch.get_paginator("list_jobs").paginate(jobQueue=queue, jobStatus="SUCCEEDED")
    return {j["jobId"]: j["jobName"] for page in pages for j in page["jobSummaryList"]}


def _rule(job_name: str) -> str:
    """The rule in the plugin's job name `smk-<rule>-<run>-<jobid>-a<attempt>`."""
    return job_name.split("-")[1]


def _job_role(batch, job_id: str) -> str:
    definition = batch.describe_jobs(jobs=[job_id])["jobs"][0]["jobDefinition"]
    described = batch.describe_job_definitions(jobDefinitions=[definition])["jobDefinitions"]
    return described[0]["containerProperties"]["jobRoleArn"]
