"""The SubmitJob request for one Snakemake job, or for an array of alike jobs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from snakemake_executor_plugin_awsbatch import multinode
from snakemake_executor_plugin_awsbatch.resources import JobResources

MAX_JOB_NAME = 128
_INVALID_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]+")
_INVALID_TAG_CHARS = re.compile(r"[^\w.:/=+\-@ ]+")

# Batch retries an attempt unless an entry says EXIT; the last entry catches the rest.
# Spot reclaims and container start failures are the platform's fault, so Batch
# retries them; anything else goes back to Snakemake (its own --retries).
RETRYABLE = [
    {"onStatusReason": "Host EC2*", "action": "RETRY"},
    {"onReason": "CannotPullContainerError*", "action": "RETRY"},
    {"onReason": "CannotStartContainerError*", "action": "RETRY"},
    {"onStatusReason": "Task failed to start", "action": "RETRY"},
]
EXIT_OTHERWISE = {"onReason": "*", "action": "EXIT"}


def retry_strategy(spot_retries: int) -> dict[str, Any]:
    return {"attempts": 1 + spot_retries, "evaluateOnExit": [*RETRYABLE, EXIT_OTHERWISE]}


def job_name(label: str, unique: str) -> str:
    """A valid Batch job name: readable label first, the unique part always kept whole."""
    unique = _INVALID_NAME_CHARS.sub("_", unique)
    label = _INVALID_NAME_CHARS.sub("_", label).strip("_") or "job"
    room = MAX_JOB_NAME - len("smk--") - len(unique)
    return f"smk-{label[:room]}-{unique}"


def tag_value(value: str) -> str:
    return _INVALID_TAG_CHARS.sub("_", value)[:256]


def submit_request(
    *,
    name: str,
    queue: str,
    job_definition: str,
    command: list[str],
    environment: Mapping[str, str],
    resources: JobResources,
    spot_retries: int,
    tags: Mapping[str, str],
    array_size: int | None = None,
    nodes: int = 1,
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "jobName": name,
        "jobQueue": queue,
        "jobDefinition": job_definition,
        "containerOverrides": {
            "command": command,
            "environment": [{"name": k, "value": v} for k, v in sorted(environment.items())],
            "resourceRequirements": resources.requirements(),
        },
        "retryStrategy": retry_strategy(spot_retries),
        "propagateTags": True,
        "tags": dict(tags),
    }
    if array_size:
        request["arrayProperties"] = {"size": array_size}
    if resources.timeout_seconds:
        request["timeout"] = {"attemptDurationSeconds": resources.timeout_seconds}
    if nodes > 1:
        return multinode.submit_request(request)
    return request
