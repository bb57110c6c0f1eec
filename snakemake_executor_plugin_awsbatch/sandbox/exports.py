"""How to reach a running sandbox: the exported variables, and a boto3 session for the host.

The variables are standard AWS configuration plus the plugin's public settings, so
`snakemake --executor awsbatch` needs no other flag and the plugin no sandbox-only code.
"""

from __future__ import annotations

from typing import Any

import boto3

REGION = "us-east-1"
# moto accepts any credentials; these are not secret, and only reach 127.0.0.1.
DUMMY_KEY = "sandbox"
# Set in the calling environment, these would mix real credentials or a real profile
# into the sandbox's configuration.
UNSET = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


def endpoint(record: dict[str, Any]) -> str:
    return f"http://127.0.0.1:{record['port']}"


def environment_variables(record: dict[str, Any]) -> dict[str, str]:
    """The variables `env` prints and `run` sets, from a running sandbox's record.

    Queues and S3 prefix are the deployed stack's outputs (environment.py), given
    explicitly rather than as SNAKEMAKE_AWSBATCH_STACK so that they show what is
    configured. The stack's log group is moto's /aws/batch/job, the plugin's default.
    """
    multinode_queue = record["batch"].get("multinode_queue")  # a sandbox started before it
    return {
        "AWS_ENDPOINT_URL": endpoint(record),
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": DUMMY_KEY,
        "AWS_SECRET_ACCESS_KEY": DUMMY_KEY,
        "SNAKEMAKE_AWSBATCH_DEFAULT_QUEUE": record["batch"]["default_queue"],
        "SNAKEMAKE_AWSBATCH_PRIORITY_QUEUE": record["batch"]["priority_queue"],
        **({"SNAKEMAKE_AWSBATCH_MULTINODE_QUEUE": multinode_queue} if multinode_queue else {}),
        "SNAKEMAKE_AWSBATCH_IMAGE": record["image"],
        "SNAKEMAKE_AWSBATCH_S3_PREFIX": record["s3_prefix"],
        "SNAKEMAKE_AWSBATCH_SCRATCH_ROOT": record["scratch_dir"],
        "SNAKEMAKE_AWSBATCH_RUNTIME_ROOT": record["runtime_root"],
        "SNAKEMAKE_AWSBATCH_SANDBOX_DIR": record["state_dir"],
    }


def shell_lines(variables: dict[str, str]) -> list[str]:
    """`unset`/`export` lines for `eval "$(... env)"`; values are single-quoted for the shell."""
    quoted = {name: "'" + value.replace("'", "'\\''") + "'" for name, value in variables.items()}
    return [f"unset {' '.join(UNSET)}", *(f"export {k}={v}" for k, v in quoted.items())]


class SandboxSession(boto3.Session):
    """A boto3 session whose clients and resources talk to the sandbox's moto."""

    def __init__(self, endpoint_url: str):
        super().__init__(
            aws_access_key_id=DUMMY_KEY, aws_secret_access_key=DUMMY_KEY, region_name=REGION
        )
        self.endpoint_url = endpoint_url

    def client(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("endpoint_url", self.endpoint_url)
        return super().client(*args, **kwargs)

    def resource(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("endpoint_url", self.endpoint_url)
        return super().resource(*args, **kwargs)
