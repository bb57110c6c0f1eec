"""The Batch environment the sandbox creates in moto: two compute environments, two queues.

This is the one place that shapes it, so that it can later be replaced by a deployment of
the cloudformation/ templates into moto. Shape (as on AWS with our templates):

- `sandbox-spot`      MANAGED, SPOT, minvCpus 0 (moto starts no instances)
- `sandbox-ondemand`  MANAGED, EC2,  minvCpus 0
- queue `default`     -> sandbox-spot
- queue `priority`    -> sandbox-ondemand, then sandbox-spot; higher priority

moto does not schedule by capacity or priority: every job starts at once in a container.
"""

from __future__ import annotations

from typing import Any, Literal

import boto3

DEFAULT_QUEUE = "default"
PRIORITY_QUEUE = "priority"
SPOT_CE = "sandbox-spot"
ON_DEMAND_CE = "sandbox-ondemand"
_ASSUME_BATCH = (
    '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", '
    '"Principal": {"Service": "batch.amazonaws.com"}, "Action": "sts:AssumeRole"}]}'
)
_ASSUME_EC2 = _ASSUME_BATCH.replace("batch.amazonaws.com", "ec2.amazonaws.com")


def create_batch_environment(session: boto3.Session) -> dict[str, Any]:
    """Create the compute environments and queues; -> queue names and CE ARNs."""
    iam, ec2, batch = session.client("iam"), session.client("ec2"), session.client("batch")
    service_role = iam.create_role(
        RoleName="sandbox-batch-service", AssumeRolePolicyDocument=_ASSUME_BATCH
    )["Role"]["Arn"]
    instance_profile = _instance_profile(iam)
    network = _default_network(ec2)

    def compute_environment(name: str, kind: Literal["SPOT", "EC2"]) -> str:
        return batch.create_compute_environment(
            computeEnvironmentName=name,
            type="MANAGED",
            state="ENABLED",
            serviceRole=service_role,
            computeResources={
                "type": kind,
                "minvCpus": 0,
                "maxvCpus": 256,
                "instanceTypes": ["optimal"],
                "instanceRole": instance_profile,
                "subnets": network["subnets"],
                "securityGroupIds": network["securityGroupIds"],
            },
        )["computeEnvironmentArn"]

    spot = compute_environment(SPOT_CE, "SPOT")
    on_demand = compute_environment(ON_DEMAND_CE, "EC2")
    batch.create_job_queue(
        jobQueueName=DEFAULT_QUEUE,
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": spot}],
    )
    batch.create_job_queue(
        jobQueueName=PRIORITY_QUEUE,
        state="ENABLED",
        priority=10,
        computeEnvironmentOrder=[
            {"order": 1, "computeEnvironment": on_demand},
            {"order": 2, "computeEnvironment": spot},
        ],
    )
    return {
        "default_queue": DEFAULT_QUEUE,
        "priority_queue": PRIORITY_QUEUE,
        "compute_environments": {"spot": spot, "on_demand": on_demand},
    }


def _instance_profile(iam: Any) -> str:
    iam.create_role(RoleName="sandbox-batch-instance", AssumeRolePolicyDocument=_ASSUME_EC2)
    profile = iam.create_instance_profile(InstanceProfileName="sandbox-batch-instance")
    iam.add_role_to_instance_profile(
        InstanceProfileName="sandbox-batch-instance", RoleName="sandbox-batch-instance"
    )
    return profile["InstanceProfile"]["Arn"]


def _default_network(ec2: Any) -> dict[str, list[str]]:
    """moto's default VPC: its subnets and default security group."""
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]
    vpc_filter = [{"Name": "vpc-id", "Values": [vpc["VpcId"]]}]
    subnets = [s["SubnetId"] for s in ec2.describe_subnets(Filters=vpc_filter)["Subnets"]]
    groups = ec2.describe_security_groups(
        Filters=[*vpc_filter, {"Name": "group-name", "Values": ["default"]}]
    )["SecurityGroups"]
    return {"subnets": subnets, "securityGroupIds": [groups[0]["GroupId"]]}
