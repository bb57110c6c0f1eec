"""boto3 clients from the standard AWS configuration chain.

The plugin never takes an endpoint or credentials of its own: `AWS_ENDPOINT_URL`,
profiles, roles and the instance metadata service decide where calls go. That
is also how the local sandbox reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from snakemake_executor_plugin_awsbatch.errors import ConfigError
from snakemake_executor_plugin_awsbatch.transfer.client import USER_AGENT

# botocore retries throttling and transient errors itself (standard mode: exponential
# back-off with jitter); the status loop adds its own back-off on top, so a throttled
# poll never fails a job. Not "adaptive": its client-side rate limiter slows every call
# after a few throttled ones, which stalled whole runs when 30 % of calls were refused.
# 10 attempts: with 30 % of calls failing, one call in ~170,000 still fails.
RETRIES = {"mode": "standard", "total_max_attempts": 10}
_CLIENT_CONFIG = botocore.config.Config(
    retries=RETRIES,  # type: ignore[arg-type]
    user_agent_extra=USER_AGENT,
    max_pool_connections=20,
)
# SubmitJob is not idempotent: a retry after a lost answer creates a second job. This
# client never retries; submission.py retries itself, looking the job up by name first.
_SUBMIT_CONFIG = _CLIENT_CONFIG.merge(
    botocore.config.Config(retries={"mode": "standard", "total_max_attempts": 1})
)


@dataclass(frozen=True)
class AwsClients:
    region: str
    batch: Any
    submit: Any  # Batch client for SubmitJob only: no automatic retries
    logs: Any
    ec2: Any
    cloudformation: Any
    s3: Any

    def console_job_url(self, job_id: str) -> str:
        return (
            f"https://{self.region}.console.aws.amazon.com/batch/home"
            f"?region={self.region}#jobs/detail/{job_id}"
        )


def connect(region: str | None) -> AwsClients:
    """Clients for one region; fails with one line if region or credentials are missing."""
    try:
        session = boto3.session.Session(region_name=region)
    except botocore.exceptions.ProfileNotFound as e:
        raise ConfigError(f"AWS profile not found: {e}; check AWS_PROFILE") from None
    if not session.region_name:
        raise ConfigError(
            "No AWS region configured: set --awsbatch-region, AWS_REGION, or a region "
            "in your AWS profile"
        )
    if session.get_credentials() is None:
        raise ConfigError(
            "No AWS credentials found: configure a profile (aws configure / AWS_PROFILE), "
            "environment credentials, or run where an IAM role is available"
        )

    config = _CLIENT_CONFIG
    return AwsClients(
        region=session.region_name,
        batch=session.client("batch", config=config),
        submit=session.client("batch", config=_SUBMIT_CONFIG),
        logs=session.client("logs", config=config),
        ec2=session.client("ec2", config=config),
        cloudformation=session.client("cloudformation", config=config),
        s3=session.client("s3", config=config),
    )


def error_code(error: BaseException) -> str:
    if isinstance(error, botocore.exceptions.ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return ""


def is_throttling(error: BaseException) -> bool:
    return error_code(error) in {
        "TooManyRequestsException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
    }
