"""Where moto's Batch differs from AWS Batch in ways the plugin can notice, patched here.

These patches are applied only inside the sandbox's own moto server process
(`moto_server.py`), never in the plugin or in a test process. Each one makes moto behave
like AWS Batch on ECS:

1. Stopping a job (terminate_job, or attemptDurationSeconds exceeded): moto SIGKILLs the
   container at once. ECS sends SIGTERM, waits (ECS_CONTAINER_STOP_TIMEOUT, 30 s by
   default), then SIGKILLs, which gives the job-side runner time to clean its scratch
   directory. moto's only stop path is `Container.kill()` without a signal, so that call
   becomes `Container.stop(timeout=grace)` (SIGTERM, grace, SIGKILL).
2. A failed job: moto gives no statusReason; AWS says "Job attempt duration exceeded
   timeout" for a timeout and "Essential container in task exited" for a non-zero exit.
   moto never reports the container's exit code; AWS reports container.exitCode and
   attempts[].container.exitCode.
3. The endpoint a job container is told about (MOTO_HOST/MOTO_HTTP_ENDPOINT): moto says
   http://host.docker.internal, which with host networking does not reach a server bound
   to 127.0.0.1. The sandbox image's entrypoint turns MOTO_HTTP_ENDPOINT into
   AWS_ENDPOINT_URL, so it must be http://127.0.0.1.
4. Job containers carry a label naming the sandbox, so that `down` finds and removes
   them, including those of jobs moto was still running when it stopped.
5. The environment AWS Batch gives every job: moto sets only AWS_BATCH_JOB_ID; AWS also
   sets AWS_BATCH_JOB_ATTEMPT (1 for the first attempt; moto makes no other) and
   AWS_BATCH_JQ_NAME (the job queue's name).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

TIMEOUT_REASON = "Job attempt duration exceeded timeout"
EXIT_REASON = "Essential container in task exited"


def apply(label: tuple[str, str], grace_seconds: int) -> None:
    _graceful_stop(grace_seconds)
    _status_reasons()
    _exit_codes()
    _loopback_endpoint()
    _label_containers(label)
    _batch_environment()


def _graceful_stop(grace_seconds: int) -> None:
    from docker.models.containers import Container

    original_kill = Container.kill

    def kill(self: Container, signal: Any = None) -> Any:
        if signal is None:
            return self.stop(timeout=grace_seconds)
        return original_kill(self, signal=signal)

    Container.kill = kill


def _status_reasons() -> None:
    from moto.batch.models import Job

    original_mark_stopped = Job._mark_stopped

    def mark_stopped(self: Job, success: bool = True) -> None:
        if not success and not self.job_stopped and self.job_stopped_reason is None:
            self.job_stopped_reason = _failure_reason(self)
        original_mark_stopped(self, success)

    Job._mark_stopped = mark_stopped  # type: ignore[method-assign]


def _failure_reason(job: Any) -> str | None:
    duration = job._get_attempt_duration()
    if duration and datetime.now() > job.job_started_at + timedelta(seconds=duration):
        return TIMEOUT_REASON
    if job.exit_code:
        return EXIT_REASON
    return None


def _exit_codes() -> None:
    from moto.batch.models import Job

    original_details = Job._container_details
    original_stop_attempt = Job._stop_attempt

    def container_details(self: Job) -> dict[str, Any]:
        details = original_details(self)
        if self.exit_code is not None:
            details["exitCode"] = self.exit_code
        return details

    def stop_attempt(self: Job) -> None:
        original_stop_attempt(self)
        if self.latest_attempt and self.exit_code is not None:
            self.latest_attempt["container"]["exitCode"] = self.exit_code

    Job._container_details = container_details  # type: ignore[method-assign]
    Job._stop_attempt = stop_attempt  # type: ignore[method-assign]


def _loopback_endpoint() -> None:
    from moto import settings

    settings.moto_server_host = lambda: "http://127.0.0.1"  # type: ignore[assignment]


def _label_containers(label: tuple[str, str]) -> None:
    from docker.models.containers import ContainerCollection

    original_run = ContainerCollection.run

    def run(self: ContainerCollection, *args: Any, **kwargs: Any) -> Any:
        kwargs["labels"] = {**(kwargs.get("labels") or {}), label[0]: label[1]}
        return original_run(self, *args, **kwargs)

    ContainerCollection.run = run


def _batch_environment() -> None:
    from moto.batch.models import Job

    original_property = Job._get_container_property

    def container_property(self: Job, p: str, default: Any) -> Any:
        value = original_property(self, p, default)
        if p == "environment":
            value = [
                *value,
                {"name": "AWS_BATCH_JOB_ATTEMPT", "value": "1"},
                {"name": "AWS_BATCH_JQ_NAME", "value": self.job_queue.name},
            ]
        return value

    Job._get_container_property = container_property  # type: ignore[method-assign]
