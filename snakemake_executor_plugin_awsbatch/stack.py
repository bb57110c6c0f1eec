"""`--awsbatch-stack NAME`: the queues, S3 prefix, roles and log group of a deployed stack.

The stack is the root stack deployed from `cloudformation/core-environment.yaml`
(docs/cloudformation.md). Its Outputs are read by the keys in `OUTPUT_KEYS`; those keys are
the contract with the template, and a test checks that the template declares every one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from snakemake_executor_plugin_awsbatch.errors import ConfigError

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient

# StackOutputs field -> root stack output key.
OUTPUT_KEYS: dict[str, str] = {
    "default_queue": "DefaultJobQueueName",
    "priority_queue": "PriorityJobQueueName",
    "bucket": "DataBucketName",
    "s3_prefix": "S3Prefix",
    "job_role_arn": "JobRoleArn",
    "execution_role_arn": "ExecutionRoleArn",
    "log_group": "LogGroupName",
    "runtime_root": "RuntimeRoot",
    "multinode_queue": "MultiNodeJobQueueName",
}
# A stack deployed before tool-only images (docs/tool-images.md) has no RuntimeRoot.
# Nor has one deployed without CreateMultiNodeEnvironment a MultiNodeJobQueueName.
OPTIONAL_FIELDS = frozenset({"execution_role_arn", "runtime_root", "multinode_queue"})
# Statuses in which the stack's outputs describe resources that exist.
_USABLE_STATUSES = frozenset(
    {
        "CREATE_COMPLETE",
        "UPDATE_COMPLETE",
        "UPDATE_ROLLBACK_COMPLETE",
        "IMPORT_COMPLETE",
        "IMPORT_ROLLBACK_COMPLETE",
        "UPDATE_IN_PROGRESS",
        "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
        "UPDATE_ROLLBACK_IN_PROGRESS",
        "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS",
    }
)
_HOW_TO_DEPLOY = (
    "deploy cloudformation/core-environment.yaml as described in docs/cloudformation.md"
)


@dataclass(frozen=True)
class StackOutputs:
    """What `--awsbatch-stack` supplies; each value fills the matching unset setting."""

    stack_name: str
    default_queue: str
    priority_queue: str
    bucket: str
    s3_prefix: str
    job_role_arn: str
    log_group: str
    execution_role_arn: str | None = None
    runtime_root: str | None = None
    multinode_queue: str | None = None

    def settings(self) -> dict[str, str]:
        """Setting name (ExecutorSettings field) -> value, for the settings the stack supplies."""
        values = {
            "default_queue": self.default_queue,
            "priority_queue": self.priority_queue,
            "s3_prefix": self.s3_prefix,
            "job_role": self.job_role_arn,
            "log_group": self.log_group,
        }
        if self.execution_role_arn:
            values["execution_role"] = self.execution_role_arn
        if self.runtime_root:
            values["runtime_root"] = self.runtime_root
        if self.multinode_queue:
            values["multinode_queue"] = self.multinode_queue
        return values


def read_stack_outputs(cfn_client: CloudFormationClient, stack_name: str) -> StackOutputs:
    """Read the root stack's Outputs; any problem is one `ConfigError` line with the fix."""
    try:
        stacks = cfn_client.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as error:
        message = error.response.get("Error", {}).get("Message", str(error))
        if "does not exist" in message:
            region = cfn_client.meta.region_name
            raise ConfigError(
                f"--awsbatch-stack: no CloudFormation stack {stack_name!r} in region {region}; "
                f"pass the name of the root stack you deployed, or {_HOW_TO_DEPLOY}"
            ) from None
        raise ConfigError(
            f"--awsbatch-stack: cannot read stack {stack_name!r}: {message}"
        ) from None
    except BotoCoreError as error:
        raise ConfigError(f"--awsbatch-stack: cannot read stack {stack_name!r}: {error}") from None
    if not stacks:
        raise ConfigError(
            f"--awsbatch-stack: no CloudFormation stack {stack_name!r}; {_HOW_TO_DEPLOY}"
        )
    stack = stacks[0]
    status = stack.get("StackStatus", "")
    if status not in _USABLE_STATUSES:
        raise ConfigError(
            f"--awsbatch-stack: stack {stack_name!r} is {status}; wait until it is "
            "CREATE_COMPLETE or UPDATE_COMPLETE, or delete and redeploy it"
        )
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])}
    values: dict[str, str | None] = {}
    for name, key in OUTPUT_KEYS.items():
        value = outputs.get(key, "")
        if not value and name not in OPTIONAL_FIELDS:
            raise ConfigError(
                f"--awsbatch-stack: stack {stack_name!r} has no output {key}; pass the root "
                "stack (not a nested one) deployed from cloudformation/core-environment.yaml "
                "of this plugin version, or redeploy it"
            )
        values[name] = value or None
    return StackOutputs(
        stack_name=stack_name,
        default_queue=str(values["default_queue"]),
        priority_queue=str(values["priority_queue"]),
        bucket=str(values["bucket"]),
        s3_prefix=str(values["s3_prefix"]),
        job_role_arn=str(values["job_role_arn"]),
        log_group=str(values["log_group"]),
        execution_role_arn=values["execution_role_arn"],
        runtime_root=values["runtime_root"],
        multinode_queue=values["multinode_queue"],
    )
