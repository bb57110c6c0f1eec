"""What a Batch job's description means for Snakemake.

`describe_batches` asks DescribeJobs for up to 100 ids per call; `classify`
turns one description (or its absence) into a verdict the executor acts on.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DESCRIBE_BATCH = 100
SPOT_RECLAIM_PREFIX = "Host EC2"
# Reasons Batch gives a RUNNABLE job it cannot place (job_stuck_in_runnable docs).
UNSCHEDULABLE_PREFIXES = ("MISCONFIGURATION:", "CAPACITY:")
# Rounds a job may be missing from DescribeJobs before it counts as lost. Batch
# is eventually consistent right after SubmitJob, so one miss is not enough.
LOST_AFTER_ROUNDS = 3


class Verdict(enum.Enum):
    ACTIVE = "active"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SPOT_RECLAIMED = "spot_reclaimed"
    UNSCHEDULABLE = "unschedulable"
    LOST = "lost"


@dataclass
class Tracking:
    """Per-job memory across status rounds (kept in SubmittedJobInfo.aux)."""

    missing_rounds: int = 0
    stuck_since: float | None = None


def chunks(ids: Sequence[str], size: int = DESCRIBE_BATCH) -> Iterator[list[str]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def describe_batch(batch: Any, ids: list[str]) -> dict[str, dict[str, Any]]:
    response = batch.describe_jobs(jobs=ids)
    return {job["jobId"]: job for job in response.get("jobs", [])}


def last_attempt(detail: Mapping[str, Any]) -> Mapping[str, Any]:
    attempts = detail.get("attempts") or []
    return attempts[-1] if attempts else {}


def was_spot_reclaimed(detail: Mapping[str, Any]) -> bool:
    reasons = [detail.get("statusReason") or "", last_attempt(detail).get("statusReason") or ""]
    return any(r.startswith(SPOT_RECLAIM_PREFIX) for r in reasons)


def classify(
    detail: Mapping[str, Any] | None, tracking: Tracking, now: float, unschedulable_after: float
) -> Verdict:
    """Update `tracking` from this round's description and say what the job's state means."""
    if detail is None:
        tracking.missing_rounds += 1
        return Verdict.LOST if tracking.missing_rounds >= LOST_AFTER_ROUNDS else Verdict.ACTIVE
    tracking.missing_rounds = 0
    status = detail.get("status")
    if status == "SUCCEEDED":
        return Verdict.SUCCEEDED
    if status == "FAILED":
        return Verdict.SPOT_RECLAIMED if was_spot_reclaimed(detail) else Verdict.FAILED
    reason = detail.get("statusReason") or ""
    if status == "RUNNABLE" and reason.startswith(UNSCHEDULABLE_PREFIXES):
        if tracking.stuck_since is None:
            tracking.stuck_since = now
        if now - tracking.stuck_since >= unschedulable_after:
            return Verdict.UNSCHEDULABLE
    else:
        tracking.stuck_since = None
    return Verdict.ACTIVE


# Container reasons of attempts whose container never ran (AWS's error names).
START_FAILURES = (
    "CannotPullContainerError",
    "CannotStartContainerError",
    "CannotCreateContainerError",
)


def could_not_start(detail: Mapping[str, Any]) -> bool:
    container = {**(last_attempt(detail).get("container") or {}), **(detail.get("container") or {})}
    return str(container.get("reason") or "").startswith(START_FAILURES)


def failure_summary(detail: Mapping[str, Any]) -> str:
    """Status reason, container reason and exit code, as far as Batch reported them."""
    container = {**(last_attempt(detail).get("container") or {}), **(detail.get("container") or {})}
    parts = [f"status reason: {detail.get('statusReason') or 'none given'}"]
    if container.get("reason"):
        parts.append(f"container reason: {container['reason']}")
    exit_code = container.get("exitCode")
    parts.append(f"exit code: {exit_code if exit_code is not None else 'unknown'}")
    return "; ".join(parts)


def log_stream(detail: Mapping[str, Any]) -> str | None:
    container = detail.get("container") or {}
    return container.get("logStreamName") or (last_attempt(detail).get("container") or {}).get(
        "logStreamName"
    )
