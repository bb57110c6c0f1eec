"""The templates deployed into moto (in-process) create what the plugin expects.

moto keeps compute environments, queues, launch templates, roles, VPC pieces and bucket
encryption; what it drops (bucket policy, public access block, lifecycle, queue time
limits, egress rules, placement group) is checked on the templates in test_templates.py.
"""

from __future__ import annotations

import ast
import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from snakemake_executor_plugin_awsbatch.errors import ConfigError
from snakemake_executor_plugin_awsbatch.sandbox.cfn_deploy import (
    CfnDeployError,
    nested_stack_name,
)
from snakemake_executor_plugin_awsbatch.stack import OUTPUT_KEYS, read_stack_outputs
from tests.cloudformation.conftest import NESTED, RUNTIME_SCRIPT, Deployment, deploy

DEFAULT_TYPES = "c6i,m6i,r6i,c6id,m6id,r6id,c5,m5,r5"


def policy_document(iam: Any, role: str, name: str) -> dict[str, Any]:
    document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
    if isinstance(document, dict):
        return document
    # moto returns a CloudFormation-created inline policy as the text of a Python dict
    text = unquote(document)
    try:
        return dict(json.loads(text))
    except json.JSONDecodeError:
        return dict(ast.literal_eval(text))


def queues(env: Deployment) -> dict[str, dict]:
    batch = env.client("batch")
    return {q["jobQueueName"]: q for q in batch.describe_job_queues()["jobQueues"]}


def environments(env: Deployment) -> dict[str, dict]:
    batch = env.client("batch")
    envs = batch.describe_compute_environments()["computeEnvironments"]
    return {e["computeEnvironmentArn"]: e for e in envs}


def test_one_stack_per_nested_template_then_the_root_outputs(default_env: Deployment) -> None:
    cfn = default_env.client("cloudformation")
    names = {s["StackName"]: s["StackStatus"] for s in cfn.describe_stacks()["Stacks"]}
    expected = {nested_stack_name("core", logical) for logical in NESTED} | {"core"}
    assert names == dict.fromkeys(expected, "CREATE_COMPLETE")
    assert set(OUTPUT_KEYS.values()) <= set(default_env.outputs())


def test_queue_order_and_priorities(default_env: Deployment) -> None:
    out = default_env.outputs()
    found = queues(default_env)
    assert set(found) == {"core-default", "core-priority"}
    default, priority = found["core-default"], found["core-priority"]
    assert out["DefaultJobQueueName"] == "core-default"
    assert out["DefaultJobQueueArn"] == default["jobQueueArn"]
    assert out["PriorityJobQueueArn"] == priority["jobQueueArn"]
    assert priority["priority"] > default["priority"]
    spot, ondemand = out["SpotComputeEnvironmentArn"], out["OnDemandComputeEnvironmentArn"]
    assert [e["computeEnvironment"] for e in default["computeEnvironmentOrder"]] == [spot]
    order = sorted(priority["computeEnvironmentOrder"], key=lambda e: e["order"])
    assert [e["computeEnvironment"] for e in order] == [ondemand, spot]


def test_allocation_strategies_and_scale_to_zero(default_env: Deployment) -> None:
    out = default_env.outputs()
    envs = environments(default_env)
    spot = envs[out["SpotComputeEnvironmentArn"]]["computeResources"]
    ondemand = envs[out["OnDemandComputeEnvironmentArn"]]["computeResources"]
    assert (spot["type"], spot["allocationStrategy"]) == ("SPOT", "SPOT_PRICE_CAPACITY_OPTIMIZED")
    assert (ondemand["type"], ondemand["allocationStrategy"]) == ("EC2", "BEST_FIT_PROGRESSIVE")
    for compute in (spot, ondemand):
        assert compute["minvCpus"] == 0
        assert "spotIamFleetRole" not in compute
        assert compute["instanceTypes"] == DEFAULT_TYPES.split(",")
        assert compute["launchTemplate"] == {
            "launchTemplateId": out["LaunchTemplateId"],
            "version": out["LaunchTemplateVersion"],
        }
        assert compute["launchTemplate"]["version"].isdigit()  # explicit, never $Latest
        assert compute["ec2Configuration"] == [
            {"imageType": "ECS_AL2023", "imageIdOverride": out["ImageId"]}
        ]
    assert (spot["maxvCpus"], ondemand["maxvCpus"]) == (256, 64)
    names = [e["computeEnvironmentName"] for e in envs.values()]
    assert all(name.startswith("core-ComputeEnvironments-") for name in names)  # generated


def test_ami_is_the_recommended_amazon_linux_2023_image(default_env: Deployment) -> None:
    ssm = default_env.client("ssm")
    recommended = ssm.get_parameter(
        Name="/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"
    )["Parameter"]["Value"]
    assert default_env.outputs()["ImageId"] == recommended


def test_launch_template_imdsv2_disks_and_scratch(default_env: Deployment) -> None:
    ec2 = default_env.client("ec2")
    version = ec2.describe_launch_template_versions(
        LaunchTemplateId=default_env.outputs()["LaunchTemplateId"]
    )["LaunchTemplateVersions"][0]
    data = version["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    disks = {d["DeviceName"]: d["Ebs"] for d in data["BlockDeviceMappings"]}
    assert disks["/dev/xvda"]["VolumeType"] == "gp3" and disks["/dev/xvda"]["Encrypted"]
    assert disks["/dev/xvdb"]["VolumeType"] == "gp3" and disks["/dev/xvdb"]["Encrypted"]
    user_data = base64.b64decode(data["UserData"]).decode()
    assert 'Content-Type: multipart/mixed; boundary="==SNAKEMAKE-AWSBATCH=="' in user_data
    assert "SCRATCH=/scratch" in user_data and 'chmod 1777 "$SCRATCH"' in user_data
    assert "DISABLE_HYPERTHREADING=false\n" in user_data


def test_job_role_is_limited_to_the_bucket(default_env: Deployment) -> None:
    out = default_env.outputs()
    iam = default_env.client("iam")
    role = out["JobRoleArn"].rsplit("/", 1)[1]
    assert iam.list_role_policies(RoleName=role)["PolicyNames"] == ["data-bucket"]
    document = policy_document(iam, role, "data-bucket")
    bucket_arn = f"arn:aws:s3:::{out['DataBucketName']}"
    resources = set()
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        found = statement["Resource"]
        resources |= set([found] if isinstance(found, str) else found)
        assert all(action.startswith("s3:") and "*" not in action for action in statement["Action"])
    assert resources == {bucket_arn, f"{bucket_arn}/*"}
    trust = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}


def test_bucket_log_group_and_network(default_env: Deployment) -> None:
    out = default_env.outputs()
    s3 = default_env.client("s3")
    rule = s3.get_bucket_encryption(Bucket=out["DataBucketName"])[
        "ServerSideEncryptionConfiguration"
    ]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert out["S3Prefix"] == f"s3://{out['DataBucketName']}/snakemake"
    assert out["RunScratchPrefix"] == "snakemake/_awsbatch/runs/"
    logs = default_env.client("logs").describe_log_groups(logGroupNamePrefix="/aws/batch/core")
    (group,) = logs["logGroups"]
    assert group["logGroupName"] == out["LogGroupName"] == "/aws/batch/core"
    assert group["retentionInDays"] == 30
    ec2 = default_env.client("ec2")
    subnets = out["SubnetIds"].split(",")
    described = ec2.describe_subnets(SubnetIds=subnets)["Subnets"]
    assert len({s["AvailabilityZone"] for s in described}) == 2
    assert not any(s["MapPublicIpOnLaunch"] for s in described)
    (vpc_id,) = {s["VpcId"] for s in described}
    endpoints = ec2.describe_vpc_endpoints()["VpcEndpoints"]
    assert [e["ServiceName"] for e in endpoints if e["VpcId"] == vpc_id] == [
        "com.amazonaws.us-east-1.s3"
    ]
    group = ec2.describe_security_groups(GroupIds=[out["BatchSecurityGroupId"]])
    ingress = group["SecurityGroups"][0]["IpPermissions"]
    assert all(not rule["IpRanges"] for rule in ingress)  # only from the group itself


def test_read_stack_outputs(default_env: Deployment) -> None:
    out = default_env.outputs()
    stack = read_stack_outputs(default_env.client("cloudformation"), "core")
    assert stack.default_queue == "core-default"
    assert stack.priority_queue == "core-priority"
    assert stack.bucket == out["DataBucketName"]
    assert stack.s3_prefix == f"s3://{out['DataBucketName']}/snakemake"
    assert stack.job_role_arn == out["JobRoleArn"]
    assert stack.execution_role_arn == out["ExecutionRoleArn"]
    assert stack.log_group == "/aws/batch/core"
    assert stack.settings()["job_role"] == out["JobRoleArn"]
    assert stack.runtime_root == out["RuntimeRoot"] == "/opt/snakemake-awsbatch/runtimes"


def test_no_job_runtime_by_default(default_env: Deployment) -> None:
    """Without RuntimeRepository and RuntimeKeys no environment has the runtimes tag."""
    assert "RuntimeKeys" not in default_env.outputs()
    for env in environments(default_env).values():
        assert "snakemake-awsbatch-runtimes" not in env["computeResources"]["tags"]
        assert env["computeResources"]["tags"]["name"].startswith("core-")


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_runtime_script_does_nothing_without_keys(default_env: Deployment, tmp_path: Path) -> None:
    script = default_env.user_data_parts()[RUNTIME_SCRIPT]
    assert 'RUNTIME_KEYS=""\n' in script
    default_root = 'RUNTIME_ROOT="/opt/snakemake-awsbatch/runtimes"\n'
    assert default_root in script
    # never /opt on the test machine, even if the script regressed
    (tmp_path / "runtime.sh").write_text(
        script.replace(default_root, f'RUNTIME_ROOT="{tmp_path}/runtimes"\n')
    )
    result = subprocess.run(
        ["bash", str(tmp_path / "runtime.sh")],
        env={
            "PATH": "/usr/bin:/bin",
            "CONTAINER_CLI": "/nonexistent/cli",
            "HOST_LOG": str(tmp_path / "host.log"),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runtime.sh"]


def test_read_stack_outputs_missing_stack(default_env: Deployment) -> None:
    with pytest.raises(ConfigError, match=r"no CloudFormation stack 'nope' in region us-east-1"):
        read_stack_outputs(default_env.client("cloudformation"), "nope")


def test_read_stack_outputs_of_a_nested_stack(default_env: Deployment) -> None:
    with pytest.raises(ConfigError, match=r"has no output DefaultJobQueueName; pass the root"):
        read_stack_outputs(default_env.client("cloudformation"), "core-Iam")


def test_deploy_again_is_a_no_op(default_env: Deployment) -> None:
    cfn = default_env.client("cloudformation")
    before = [s["StackId"] for s in cfn.describe_stacks()["Stacks"]]
    assert deploy().stack_name == "core"
    assert [s["StackId"] for s in cfn.describe_stacks()["Stacks"]] == before


def test_unknown_parameter_is_refused(default_env: Deployment) -> None:
    with pytest.raises(CfnDeployError, match="has no parameter MaxvCpus"):
        deploy({"MaxvCpus": "4"}, stack_name="other")
