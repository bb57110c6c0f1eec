"""Shared pieces of the CloudFormation tests: the templates, and deployments into moto.

moto runs in-process (`mock_aws`); no AWS account or network is touched. A deployment
follows the root template's wiring (`sandbox/cfn_deploy.py`) because moto cannot resolve
nested stack outputs.
"""

from __future__ import annotations

import base64
import email
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from snakemake_executor_plugin_awsbatch.sandbox.cfn_deploy import (
    deploy_core_environment,
    load_template,
)

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "cloudformation"
ROOT = TEMPLATES / "core-environment.yaml"
NESTED = {
    "Network": "network.yaml",
    "Storage": "storage.yaml",
    "Iam": "iam.yaml",
    "LaunchTemplate": "launch-template.yaml",
    "ComputeEnvironments": "compute-environments.yaml",
    "JobQueues": "job-queues.yaml",
}
ALL_TEMPLATES = sorted(TEMPLATES.glob("*.yaml"))
REGION = "us-east-1"
# The user data part that installs the job runtimes (the local sandbox runs it too).
RUNTIME_SCRIPT = "snakemake-awsbatch-runtime.sh"


def template(name: str) -> dict[str, Any]:
    return load_template(TEMPLATES / name)


@dataclass
class Deployment:
    session: boto3.Session
    stack_name: str

    def client(self, service: str) -> Any:
        return self.session.client(service)

    def outputs(self, stack_name: str | None = None) -> dict[str, str]:
        stack = self.client("cloudformation").describe_stacks(
            StackName=stack_name or self.stack_name
        )["Stacks"][0]
        return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}

    def user_data_parts(self) -> dict[str | None, str]:
        """The deployed launch template's user data: MIME part file name -> its text (the
        host setup part has no file name), the way the local sandbox reads it."""
        version = self.client("ec2").describe_launch_template_versions(
            LaunchTemplateId=self.outputs()["LaunchTemplateId"]
        )["LaunchTemplateVersions"][0]
        message = email.message_from_bytes(
            base64.b64decode(version["LaunchTemplateData"]["UserData"])
        )
        assert message.get_content_type() == "multipart/mixed"
        parts = {}
        for part in message.get_payload():
            assert part.get_content_type() == "text/x-shellscript"
            parts[part.get_filename()] = part.get_payload(decode=True).decode()
        return parts


@pytest.fixture(scope="module")
def aws_credentials() -> Iterator[None]:
    """Dummy credentials and a region, and no endpoint override: never a real account."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        yield


def deploy(parameters: dict[str, str] | None = None, stack_name: str = "core") -> Deployment:
    session = boto3.Session(region_name=REGION)
    with warnings.catch_warnings():
        # moto warns about each resource type it skips (bucket policy, egress rules).
        warnings.simplefilter("ignore", UserWarning)
        name = deploy_core_environment(session, TEMPLATES, parameters, stack_name=stack_name)
    return Deployment(session, name)


@pytest.fixture(scope="module")
def default_env(aws_credentials: None) -> Iterator[Deployment]:
    """The core environment with every default (a new VPC, no EFS, no multi-node)."""
    with mock_aws():
        yield deploy()
