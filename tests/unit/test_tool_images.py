"""Rules in their own tool images, through the executor against moto's in-process Batch."""

from __future__ import annotations

import json

import boto3
import pytest

from snakemake_executor_plugin_awsbatch import runtime
from snakemake_executor_plugin_awsbatch.errors import ConfigError
from snakemake_executor_plugin_awsbatch.settings import ExecutorSettings
from tests.unit.conftest import IMAGE, PREFIX, ApiCalls, BatchAccount, FakeJob, make_executor

SAMTOOLS = "quay.io/biocontainers/samtools:1.21--h50ea8bc_0"
BUSYBOX = "docker.io/library/busybox:1.36"
ROOT = "/opt/snakemake-awsbatch/runtimes"


def _queues(account: BatchAccount, keys: str | None) -> None:
    """The stack's queues; their environments' instances install the runtimes `keys`."""
    tags = {runtime.RUNTIMES_TAG: keys} if keys is not None else None
    spot = account.compute_environment("spot", ["m5"], instance_tags=tags)
    ondemand = account.compute_environment("ondemand", ["m5"], kind="EC2", instance_tags=tags)
    account.queue("default", spot)
    account.queue("priority", ondemand, spot, priority=10)


def _refused(jobs: list[FakeJob], settings: ExecutorSettings | None = None) -> str:
    with pytest.raises(ConfigError) as error:
        make_executor(jobs, settings)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_tool_image_job_runs_the_runtime_from_a_read_only_mount(account: BatchAccount) -> None:
    _queues(account, f"older-key {runtime.key()}")
    tool = FakeJob(rule_name="faidx", container_img_url=f"docker://{SAMTOOLS}")
    plain = FakeJob(rule_name="report")
    executor, recorder = make_executor([tool, plain])
    calls = ApiCalls(executor.aws.batch, executor.aws.submit)
    executor.run_job(tool)
    executor.run_job(plain)

    tool_request, plain_request = calls.named("SubmitJob")
    command = tool_request["containerOverrides"]["command"]
    assert command[:2] == ["/bin/sh", "-c"] and command[3] == runtime.key()
    assert command[-2:] == ["--image", SAMTOOLS]
    assert plain_request["containerOverrides"]["command"][:3] == [
        "python",
        "-m",
        "snakemake_executor_plugin_awsbatch.jobside",
    ]
    definitions = {
        d["jobDefinitionName"]: d
        for d in account.batch.describe_job_definitions(status="ACTIVE")["jobDefinitions"]
    }
    tool_definition = definitions[tool_request["jobDefinition"].split(":")[0]]
    properties = tool_definition["containerProperties"]
    assert properties["image"] == SAMTOOLS
    assert {"name": "awsbatch-runtime", "host": {"sourcePath": ROOT}} in properties["volumes"]
    assert {
        "sourceVolume": "awsbatch-runtime",
        "containerPath": runtime.MOUNT,
        "readOnly": True,
    } in properties["mountPoints"]
    plain_properties = definitions[plain_request["jobDefinition"].split(":")[0]][
        "containerProperties"
    ]
    assert all(v["name"] != "awsbatch-runtime" for v in plain_properties["volumes"])
    assert any(SAMTOOLS in line and "faidx" in line for line in recorder.infos)


def test_one_job_definition_per_image_reused_across_jobs_and_runs(account: BatchAccount) -> None:
    _queues(account, runtime.key())
    jobs = [
        *(FakeJob(rule_name="faidx", container_img_url=SAMTOOLS) for _ in range(3)),
        *(FakeJob(rule_name="count", container_img_url=BUSYBOX) for _ in range(2)),
        FakeJob(rule_name="sort", resources={"awsbatch_image": BUSYBOX}),
        FakeJob(rule_name="report"),
    ]
    executor, _ = make_executor(jobs)
    calls = ApiCalls(executor.aws.batch, executor.aws.submit)
    for job in jobs:
        executor.run_job(job)

    by_image = {}
    for request in calls.named("SubmitJob"):
        by_image.setdefault(request["containerOverrides"]["command"][-1], set()).add(
            request["jobDefinition"]
        )
    assert {image: len(d) for image, d in by_image.items()} == {SAMTOOLS: 1, BUSYBOX: 1, IMAGE: 1}
    active = account.batch.describe_job_definitions(status="ACTIVE")["jobDefinitions"]
    assert len(active) == 3

    again, _ = make_executor(jobs)
    calls = ApiCalls(again.aws.batch, again.aws.submit)
    for job in jobs:
        again.run_job(job)
    assert calls.named("RegisterJobDefinition") == []
    assert len(account.batch.describe_job_definitions(status="ACTIVE")["jobDefinitions"]) == 3


def test_every_job_in_its_own_image_needs_no_default_image(account: BatchAccount) -> None:
    _queues(account, runtime.key())
    job = FakeJob(rule_name="count", container_img_url=BUSYBOX)
    executor, _ = make_executor([job], ExecutorSettings(s3_prefix=PREFIX))
    calls = ApiCalls(executor.aws.batch, executor.aws.submit)
    executor.run_job(job)
    (request,) = calls.named("SubmitJob")
    assert request["containerOverrides"]["command"][-1] == BUSYBOX


def test_apptainer_never_reaches_the_jobs_snakemake(account: BatchAccount) -> None:
    _queues(account, runtime.key())
    job = FakeJob(rule_name="faidx", container_img_url=SAMTOOLS)
    executor, _ = make_executor([job])
    executor.format_job_exec = lambda job: (  # type: ignore[method-assign]
        "python -m snakemake --software-deployment-method apptainer conda --target-jobs 'x:'"
    )
    calls = ApiCalls(executor.aws.batch, executor.aws.submit)
    executor.run_job(job)
    (request,) = calls.named("SubmitJob")
    uri = request["containerOverrides"]["command"][4]
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    manifest = json.loads(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    assert manifest["command"] == (
        "python -m snakemake --software-deployment-method conda --target-jobs 'x:'"
    )


def test_environments_without_the_runtime_refuse_the_rule(account: BatchAccount) -> None:
    _queues(account, None)
    message = _refused([FakeJob(rule_name="faidx", container_img_url=SAMTOOLS)])
    assert message.startswith(f"Rule faidx runs its own image {SAMTOOLS}")
    assert f"needs the job runtime {runtime.key()}" in message
    assert "compute environment spot of queue default provides none" in message
    assert "RuntimeKeys" in message


def test_environments_with_another_runtime_say_which_they_have(account: BatchAccount) -> None:
    _queues(account, "snakemake8.0.0-awsbatch0.0.1-000000000000")
    message = _refused([FakeJob(rule_name="faidx", container_img_url=SAMTOOLS)])
    assert "provides snakemake8.0.0-awsbatch0.0.1-000000000000" in message


def test_a_default_image_run_needs_no_runtime(account: BatchAccount) -> None:
    _queues(account, None)
    executor, _ = make_executor([FakeJob(rule_name="report")])
    assert executor.planner.plan(FakeJob(rule_name="report")).runtime is None


def test_a_malformed_image_is_refused_before_submitting(account: BatchAccount) -> None:
    _queues(account, runtime.key())
    jobs = [FakeJob(rule_name="ok"), FakeJob(rule_name="sort", container_img_url="Bad Name")]
    message = _refused(jobs)
    assert message.startswith("Rule sort: container: 'Bad Name' is not a valid image reference")


def test_fargate_cannot_mount_the_runtime(account: BatchAccount) -> None:
    fargate = account.compute_environment("fargate", [], kind="FARGATE")
    account.queue("default", fargate)
    account.queue("priority", fargate)
    settings = ExecutorSettings(
        image=IMAGE, s3_prefix=PREFIX, execution_role="arn:aws:iam::123456789012:role/x"
    )
    message = _refused([FakeJob(rule_name="faidx", container_img_url=SAMTOOLS)], settings)
    assert "queue default runs on Fargate, which cannot mount it" in message


def test_a_priority_queue_without_the_runtime_is_a_warning(account: BatchAccount) -> None:
    tags = {runtime.RUNTIMES_TAG: runtime.key()}
    spot = account.compute_environment("spot", ["m5"], instance_tags=tags)
    ondemand = account.compute_environment("ondemand", ["m5"], kind="EC2")
    account.queue("default", spot)
    account.queue("priority", ondemand, priority=10)
    jobs = [FakeJob(rule_name="faidx", container_img_url=SAMTOOLS) for _ in range(3)]
    _, recorder = make_executor(jobs)
    (warning,) = [w for w in recorder.warnings if "priority" in w]
    assert "will not move there after spot reclaims" in warning
