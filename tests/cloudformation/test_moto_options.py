"""Optional features deployed into moto: an existing VPC, EFS, the multi-node environment,
hyperthreading off, queue names. (A module of its own: moto's in-process state is shared by
every active `mock_aws`, so this deployment must not overlap the default one.)"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from snakemake_executor_plugin_awsbatch.stack import read_stack_outputs
from tests.cloudformation.conftest import Deployment, deploy
from tests.cloudformation.test_moto_deploy import environments, policy_document, queues


@pytest.fixture(scope="module")
def everything_env(aws_credentials: None) -> Iterator[Deployment]:
    """An existing VPC, EFS, the multi-node environment, hyperthreading off, own names."""
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="us-east-1")
        vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24", AvailabilityZone=az)["Subnet"][
                "SubnetId"
            ]
            for i, az in enumerate(["us-east-1a", "us-east-1b"])
        ]
        yield deploy(
            {
                "VpcId": vpc,
                "SubnetIds": ",".join(subnets),
                "CreateEfs": "true",
                "CreateMultiNodeEnvironment": "true",
                "DisableHyperthreading": "true",
                "InstanceTypes": "c6id,m6id",
                "SpotMaxvCpus": "32",
                "DefaultQueueName": "spot",
                "PriorityQueueName": "ondemand-first",
                "ScratchVolumeSize": "0",
            },
            stack_name="full",
        )


def test_existing_vpc_is_used(everything_env: Deployment) -> None:
    ec2 = everything_env.client("ec2")
    out = everything_env.outputs()
    subnets = out["SubnetIds"].split(",")
    (vpc,) = {s["VpcId"] for s in ec2.describe_subnets(SubnetIds=subnets)["Subnets"]}
    assert [v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"] if not v["IsDefault"]] == [vpc]
    assert ec2.describe_nat_gateways()["NatGateways"] == []
    for env in environments(everything_env).values():
        assert set(env["computeResources"]["subnets"]) <= set(subnets)


def test_named_queues_and_multi_node(everything_env: Deployment) -> None:
    out = everything_env.outputs()
    found = queues(everything_env)
    assert set(found) == {"spot", "ondemand-first", "full-multinode"}
    assert out["MultiNodeJobQueueName"] == "full-multinode"
    stack = read_stack_outputs(everything_env.client("cloudformation"), "full")
    assert (stack.default_queue, stack.priority_queue) == ("spot", "ondemand-first")
    (multinode,) = found["full-multinode"]["computeEnvironmentOrder"]
    compute = environments(everything_env)[multinode["computeEnvironment"]]["computeResources"]
    assert compute["type"] == "EC2" and compute["minvCpus"] == 0
    assert compute["subnets"] == [out["SubnetIds"].split(",")[0]]
    spot = environments(everything_env)[out["SpotComputeEnvironmentArn"]]["computeResources"]
    assert (spot["instanceTypes"], spot["maxvCpus"]) == (["c6id", "m6id"], 32)


def test_hyperthreading_off_and_no_scratch_volume(everything_env: Deployment) -> None:
    ec2 = everything_env.client("ec2")
    data = ec2.describe_launch_template_versions(
        LaunchTemplateId=everything_env.outputs()["LaunchTemplateId"]
    )["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    assert "DISABLE_HYPERTHREADING=true\n" in base64.b64decode(data["UserData"]).decode()
    assert [d["DeviceName"] for d in data["BlockDeviceMappings"]] == ["/dev/xvda"]


def test_efs_and_the_job_role(everything_env: Deployment) -> None:
    out = everything_env.outputs()
    efs = everything_env.client("efs")
    (fs,) = efs.describe_file_systems()["FileSystems"]
    assert fs["FileSystemId"] == out["EfsFileSystemId"] and fs["Encrypted"]
    targets = efs.describe_mount_targets(FileSystemId=fs["FileSystemId"])["MountTargets"]
    assert sorted(t["SubnetId"] for t in targets) == sorted(out["SubnetIds"].split(","))
    ec2 = everything_env.client("ec2")
    (target_group,) = {
        g
        for t in targets
        for g in efs.describe_mount_target_security_groups(MountTargetId=t["MountTargetId"])[
            "SecurityGroups"
        ]
    }
    (rule,) = ec2.describe_security_groups(GroupIds=[target_group])["SecurityGroups"][0][
        "IpPermissions"
    ]
    assert (rule["FromPort"], rule["ToPort"], rule["IpRanges"]) == (2049, 2049, [])
    assert [p["GroupId"] for p in rule["UserIdGroupPairs"]] == [out["BatchSecurityGroupId"]]
    iam = everything_env.client("iam")
    role = out["JobRoleArn"].rsplit("/", 1)[1]
    assert sorted(iam.list_role_policies(RoleName=role)["PolicyNames"]) == [
        "data-bucket",
        "efs-access-point",
    ]
    policy = policy_document(iam, role, "efs-access-point")
    (statement,) = policy["Statement"]
    assert statement["Resource"].endswith(f":file-system/{fs['FileSystemId']}")
