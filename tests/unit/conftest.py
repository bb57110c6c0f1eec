"""Moto-backed Batch account and an Executor wired to fake Snakemake jobs.

The executor's own logic (planning, submission, status, cancel) runs unchanged
against moto's in-process Batch API; only the Snakemake side (workflow, jobs,
the scheduler callbacks) is replaced by small fakes that record what happened.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from moto import mock_aws
from throttler import Throttler

from snakemake_executor_plugin_awsbatch.executor import Executor
from snakemake_executor_plugin_awsbatch.settings import ExecutorSettings

REGION = "us-east-1"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/snakemake-job:1"
BUCKET = "unit-test-bucket"
PREFIX = f"s3://{BUCKET}/runs"
_jobids = itertools.count(1)


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Dummy credentials and a region; never a real account. Each test in its own dir."""
    monkeypatch.chdir(tmp_path)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)


@dataclass
class FakeJob:
    """The parts of Snakemake's JobExecutorInterface the executor uses."""

    rule_name: str = "align"
    resources: dict[str, Any] = field(default_factory=dict)
    threads: int = 1
    attempt: int = 1
    group: str | None = None
    is_local: bool = False
    jobid: Any = field(default_factory=lambda: next(_jobids))
    input: list[str] = field(default_factory=list)
    output: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    benchmark: str | None = None
    container_img_url: str | None = None  # the rule's container:, wildcards expanded

    @property
    def rule(self) -> SimpleNamespace:
        return SimpleNamespace(name=self.rule_name)

    @property
    def name(self) -> str:
        return f"{self.group}_{self.rule_name}" if self.group else self.rule_name

    @property
    def rules(self) -> list[str]:
        return [self.rule_name]

    def is_group(self) -> bool:
        return self.group is not None

    def log_info(self) -> None:
        """Snakemake prints the job's block when it is handed to the executor."""


class Recorder:
    def __init__(self) -> None:
        self.submitted: list[Any] = []
        self.succeeded: list[Any] = []
        self.errors: list[tuple[Any, str, list[str]]] = []
        self.warnings: list[str] = []
        self.infos: list[str] = []

    # logger interface
    def info(self, msg: str) -> None:
        self.infos.append(msg)

    def warning(self, msg: str) -> None:
        self.warnings.append(msg)

    def error(self, msg: str) -> None:
        self.warnings.append(msg)

    def debug(self, msg: str) -> None:
        pass


class BatchAccount:
    """A moto account with VPC, roles, compute environments and queues."""

    def __init__(self) -> None:
        self.batch = boto3.client("batch", region_name=REGION)
        self.iam = boto3.client("iam", region_name=REGION)
        self.ec2 = boto3.client("ec2", region_name=REGION)
        self.logs = boto3.client("logs", region_name=REGION)
        vpc = self.ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        self.subnet = self.ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"][
            "SubnetId"
        ]
        self.sg = self.ec2.create_security_group(GroupName="batch", Description="b", VpcId=vpc)[
            "GroupId"
        ]
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        self.role = self.iam.create_role(RoleName="batch-service", AssumeRolePolicyDocument="{}")[
            "Role"
        ]["Arn"]
        self.instance_profile = self.iam.create_instance_profile(InstanceProfileName="ecs")[
            "InstanceProfile"
        ]["Arn"]

    def compute_environment(
        self,
        name: str,
        instance_types: list[str] | None = None,
        kind: str = "SPOT",
        instance_tags: dict[str, str] | None = None,
    ) -> str:
        request: dict[str, Any] = {
            "computeEnvironmentName": name,
            "type": "UNMANAGED" if instance_types is None else "MANAGED",
            "state": "ENABLED",
            "serviceRole": self.role,
        }
        if instance_types is not None:
            resources: dict[str, Any] = {
                "type": kind,
                "minvCpus": 0,
                "maxvCpus": 256,
                "subnets": [self.subnet],
                "securityGroupIds": [self.sg],
            }
            if not kind.startswith("FARGATE"):
                resources |= {
                    "instanceTypes": instance_types,
                    "instanceRole": self.instance_profile,
                    "desiredvCpus": 0,
                }
            if instance_tags:
                resources["tags"] = instance_tags
            request["computeResources"] = resources
        return self.batch.create_compute_environment(**request)["computeEnvironmentArn"]

    def queue(self, name: str, *envs: str, state: str = "ENABLED", priority: int = 1) -> str:
        return self.batch.create_job_queue(
            jobQueueName=name,
            state=state,
            priority=priority,
            computeEnvironmentOrder=[
                {"order": i + 1, "computeEnvironment": e} for i, e in enumerate(envs)
            ],
        )["jobQueueArn"]

    def standard_queues(self) -> None:
        spot = self.compute_environment("spot", ["m5", "c5.large"])
        ondemand = self.compute_environment("ondemand", ["m5"], kind="EC2")
        self.queue("default", spot)
        self.queue("priority", ondemand, spot, priority=10)


class ApiCalls:
    """Counts Batch API calls by operation name (they still reach moto)."""

    def __init__(self, *clients: Any) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        for client in clients:
            client.meta.events.register("provide-client-params.batch.*", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, dict(params)))

    def named(self, operation: str) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == operation]


@pytest.fixture
def account() -> Iterator[BatchAccount]:
    with mock_aws(config={"batch": {"use_docker": False}}):
        yield BatchAccount()


def make_executor(
    jobs: list[FakeJob], settings: ExecutorSettings | None = None, envvars: dict | None = None
) -> tuple[Executor, Recorder]:
    """An Executor whose Snakemake side is faked; __post_init__ runs for real."""
    recorder = Recorder()
    executor = Executor.__new__(Executor)
    executor.workflow = SimpleNamespace(
        executor_settings=settings or ExecutorSettings(image=IMAGE, s3_prefix=PREFIX),
        dag=SimpleNamespace(needrun_jobs=lambda: list(jobs), jobs=jobs, get_sources=lambda: []),
        remote_execution_settings=SimpleNamespace(seconds_between_status_checks=0),
        rules=[],  # no checkpoints
        overwrite_workdir=None,
        storage_settings=SimpleNamespace(
            default_storage_provider=None,
            default_storage_prefix=None,
            # Snakemake's defaults (StorageSettings)
            local_storage_prefix=Path(".snakemake/storage"),
            remote_job_local_storage_prefix=Path(".snakemake/storage"),
        ),
    )
    executor.logger = recorder
    executor.status_rate_limiter = Throttler(rate_limit=1000, period=1)
    executor.next_seconds_between_status_checks = None
    executor.envvars = lambda: dict(envvars or {})  # type: ignore[method-assign]
    executor.format_job_exec = lambda job: f"python -m snakemake --target-jobs '{job.rule_name}:'"  # type: ignore[method-assign]
    executor.report_job_submission = recorder.submitted.append  # type: ignore[method-assign]
    executor.report_job_success = recorder.succeeded.append  # type: ignore[method-assign]

    def report_job_error(job_info: Any, msg: str = "", aux_logs: list | None = None, **_: Any):
        recorder.errors.append((job_info, msg, aux_logs or []))

    executor.report_job_error = report_job_error  # type: ignore[method-assign]
    executor.__post_init__()
    return executor, recorder


async def collect(executor: Executor, active: list[Any]) -> list[Any]:
    return [job async for job in executor.check_active_jobs(active)]
