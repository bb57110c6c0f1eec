"""The sandbox's AWS environment: the project's CloudFormation templates, deployed into moto.

`up` deploys `cloudformation/core-environment.yaml` (and its nested templates) with
`cfn_deploy.deploy_core_environment`, so the sandbox runs on exactly what users deploy on
AWS: the data bucket, the job log group, the roles, the spot and on-demand compute
environments (managed, with the launch template) and the two queues, plus the multi-node
environment (its cluster placement group) and queue. Only these parameters differ from the
template defaults, each because of the sandbox:

- `DefaultQueueName=default`, `PriorityQueueName=priority`, `MultiNodeQueueName=multinode`:
  short names to type.
- `CreateMultiNodeEnvironment=true`: the sandbox runs multi-node parallel jobs as AWS does
  (moto_patches 9), so it has the environment and queue for them.
- `LogGroupName=/aws/batch/job`: moto's Batch writes every container's log there,
  whatever the job definition says, so the stack's log group (which `--awsbatch-stack`
  hands to the plugin) must be that one for the plugin to find the logs.
- `CreateServiceRole=true`: moto creates a compute environment only with a service role.
- `RuntimeRepository`, `RuntimeKeys`, `RuntimeRoot` (passed by `up`): the job runtime image
  built from the sandbox's job image, and the state directory's runtimes/ as the
  instance's runtime root.

moto does not schedule by capacity or priority: every job starts at once in a container,
whichever compute environment its queue names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import snakemake_executor_plugin_awsbatch
from snakemake_executor_plugin_awsbatch.sandbox import cfn_deploy
from snakemake_executor_plugin_awsbatch.sandbox.errors import SandboxError
from snakemake_executor_plugin_awsbatch.sandbox.exports import SandboxSession

STACK_NAME = cfn_deploy.DEFAULT_STACK_NAME
DEFAULT_QUEUE = "default"
PRIORITY_QUEUE = "priority"
MULTINODE_QUEUE = "multinode"
MOTO_LOG_GROUP = "/aws/batch/job"
PARAMETERS = {
    "DefaultQueueName": DEFAULT_QUEUE,
    "PriorityQueueName": PRIORITY_QUEUE,
    "MultiNodeQueueName": MULTINODE_QUEUE,
    "CreateMultiNodeEnvironment": "true",
    "LogGroupName": MOTO_LOG_GROUP,
    "CreateServiceRole": "true",
}
TEMPLATES_ENV = "SNAKEMAKE_AWSBATCH_SANDBOX_TEMPLATES"
# The templates are not part of the wheel: they live next to the package in the source
# tree, which an editable install (`pip install -e .`, the project's venv) points at.
SOURCE_TEMPLATES = Path(snakemake_executor_plugin_awsbatch.__file__).parents[1] / "cloudformation"


def templates_dir() -> Path:
    """$SNAKEMAKE_AWSBATCH_SANDBOX_TEMPLATES, else the source tree's cloudformation/."""
    given = os.environ.get(TEMPLATES_ENV)
    directory = Path(given).expanduser().resolve() if given else SOURCE_TEMPLATES
    if not (directory / cfn_deploy.ROOT_TEMPLATE).is_file():
        raise SandboxError(
            f"no CloudFormation templates at {directory} ({cfn_deploy.ROOT_TEMPLATE} missing); "
            "install the plugin from a source checkout (pip install -e .) or set "
            f"{TEMPLATES_ENV} to the checkout's cloudformation/ directory"
        )
    return directory


def deploy(
    session: SandboxSession, templates: Path, extra: dict[str, str] | None = None
) -> dict[str, Any]:
    """Deploy the templates into the sandbox's moto -> what the state record keeps of it.

    `extra`: more root parameters (the job runtime's repository, keys and root, which
    depend on the sandbox's state directory and source tree).
    """
    try:
        name = cfn_deploy.deploy_core_environment(
            session,
            templates,
            {**PARAMETERS, **(extra or {})},
            stack_name=STACK_NAME,
            endpoint_url=session.endpoint_url,
        )
    except cfn_deploy.CfnDeployError as error:
        raise SandboxError(f"deploying {templates} into moto failed: {error}") from None
    outputs = _outputs(session, name)
    multinode_queue = outputs["MultiNodeJobQueueName"]
    return {
        "stack": name,
        "bucket": outputs["DataBucketName"],
        "s3_prefix": outputs["S3Prefix"],
        "log_group": outputs["LogGroupName"],
        "batch": {
            "default_queue": outputs["DefaultJobQueueName"],
            "priority_queue": outputs["PriorityJobQueueName"],
            "multinode_queue": multinode_queue,
            "compute_environments": {
                "spot": outputs["SpotComputeEnvironmentArn"],
                "on_demand": outputs["OnDemandComputeEnvironmentArn"],
                "multinode": _queue_environment(session, multinode_queue),
            },
        },
    }


def _queue_environment(session: SandboxSession, queue: str) -> str:
    """The compute environment of a queue of one (the root template has no output for the
    multi-node environment)."""
    (described,) = session.client("batch").describe_job_queues(jobQueues=[queue])["jobQueues"]
    (first,) = described["computeEnvironmentOrder"]
    return str(first["computeEnvironment"])


def _outputs(session: SandboxSession, stack_name: str) -> dict[str, str]:
    stack = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
    return {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])}
