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
   timeout" for a timeout, "Essential container in task exited" for a non-zero exit and
   "Task failed to start" when the container could not be started (7.). moto never
   reports the container's exit code; AWS reports container.exitCode and
   attempts[].container.exitCode.
3. What a job container gets from its instance: on AWS, the ECS agent gives every
   container its job role's credentials through the container credentials endpoint
   (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI) and the instance's network reaches AWS. moto
   gives neither, so every job container gets AWS_CONTAINER_CREDENTIALS_FULL_URI (served
   by the sandbox's moto process, moto_server.py), the region and AWS_ENDPOINT_URL, the
   way to the sandbox on 127.0.0.1 (the nodes of a multi-node job, on a network of
   their own, get the network's gateway as endpoint and, as on ECS,
   AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: node_network.py). Not through the job
   definition or the SubmitJob request, and not through the image: any image runs as a
   job, as on AWS (a rule's tool image holds nothing of the sandbox). DescribeJobs does
   not show them.
4. Job containers carry a label naming the sandbox, so that `down` finds and removes
   them, including those of jobs moto was still running when it stopped.
5. The environment AWS Batch gives every job: moto sets only AWS_BATCH_JOB_ID; AWS also
   sets AWS_BATCH_JOB_ATTEMPT (1, 2, ... per attempt, see 6.), AWS_BATCH_JQ_NAME (the
   job queue's name) and, in an array child, AWS_BATCH_JOB_ARRAY_INDEX. moto also merges
   by appending to the containerOverrides' own list, which every child of an array shares
   and every DescribeJobs grows, so one child could be given another's AWS_BATCH_JOB_ID;
   the merge here builds a new list each time.
6. Retry strategy: moto ignores it and makes one attempt. As on AWS, retryStrategy comes
   from SubmitJob, else from the job definition; after a failed attempt the first
   evaluateOnExit entry whose conditions all match decides (RETRY or EXIT), none matching
   means RETRY, while attempts remain. Each attempt is a fresh container, the job goes
   back to RUNNABLE in between, and attempts[] records each one (container exitCode,
   reason, logStreamName; startedAt, stoppedAt, statusReason). Cancelled, terminated and
   timed-out jobs are not retried (AWS's job_retries and job_timeouts pages).
7. An image that is not there, or a container that cannot start: moto tries to pull (the
   sandbox has no registry, so at best that costs time), then fails the job with no
   reason, and leaves a created-but-unstarted container behind. AWS fails the attempt
   with statusReason "Task failed to start" and container.reason
   "CannotPullContainerError: ..." (or CannotCreateContainerError, CannotStartContainerError),
   no exit code and no log stream. The sandbox pulls nothing: an image missing from
   podman's store fails the attempt at once.
8. Array jobs: moto lists the children with their parent's queue, gives them none of the
   parent's tags and no arrayProperties.index, keeps the parent SUBMITTED (SUCCEEDED only
   once a describe finds every child succeeded) and stops only the parent on
   TerminateJob/CancelJob. AWS lists children only by arrayJobId, keeps the parent
   PENDING until every child is done, then makes it SUCCEEDED, or FAILED if any child
   failed, and passes TerminateJob/CancelJob of the parent on to its children.
9. Multi-node parallel jobs (multinode.py): moto drops SubmitJob's nodeOverrides, runs
   the node containers one after another on the host network, each waited for before the
   next starts, sets no AWS_BATCH_JOB_NODE_INDEX and the like, and knows no `<jobId>#<i>`.
   AWS launches the main node, then the child nodes once it runs, each an instance with
   its own address that reaches the others; the job ends with the main node (the others
   are stopped), DescribeJobs shows each node at `<jobId>#<i>` with its own log stream.
   The sandbox runs every node as a container of its own on a bridge network of the
   sandbox's, where its moto also listens, each child node with a scratch disk of its
   own; the retry strategy (6.), timeouts, stopping (1.) and start failures (7.) apply
   to the whole job as to a single one.

Patches 6 and 7 keep per-job state that moto has no attribute for in `_STATES`.
"""

from __future__ import annotations

import threading
import uuid
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from moto.batch.models import Job

TIMEOUT_REASON = "Job attempt duration exceeded timeout"
EXIT_REASON = "Essential container in task exited"
START_FAILURE_REASON = "Task failed to start"
MAX_ATTEMPTS = 10
ARRAY_SIZES = range(2, 10_001)
FINAL = ("SUCCEEDED", "FAILED")


@dataclass
class _JobState:
    """What the sandbox tracks for a job beyond moto's own attributes (patches 6 and 7)."""

    retry_strategy: dict[str, Any]
    attempt: int = 1  # AWS_BATCH_JOB_ATTEMPT of the current (or last) attempt
    start_failure: str | None = None  # this attempt's container.reason, when it never ran
    retrying: bool = False  # this attempt failed and another one follows


_STATES: weakref.WeakKeyDictionary[Job, _JobState] = weakref.WeakKeyDictionary()
# The SubmitJob request this thread is handling: moto's handler drops retryStrategy.
_submitting = threading.local()


# Where the sandbox's moto process serves a job container's credentials (patch 3).
CREDENTIALS_PATH = "/_snakemake_awsbatch_sandbox/container-credentials"


def apply(
    label: tuple[str, str],
    grace_seconds: int,
    port: int,
    node_network: tuple[str, str] | None = None,
    node_disks: tuple[Path, Path] | None = None,
) -> None:
    """node_network: (name, gateway address) of the network of multi-node jobs' nodes,
    where this moto serves too (moto_server.py); None: such jobs fail to start.
    node_disks: (the instance's scratch disk, the directory of child nodes' own disks);
    None: every node shares the one disk."""
    from snakemake_executor_plugin_awsbatch.sandbox import multinode

    _graceful_stop(grace_seconds)
    _status_reasons()
    _exit_codes()
    _label_containers(label)
    _instance_environment(port, node_network)
    _batch_environment()
    # Before _retries, which wraps Job.run.
    multinode.apply(node_network[0] if node_network else None, node_disks)
    _retries()  # wraps _status_reasons' _mark_stopped, so it must come after it
    _start_failures()  # wraps _label_containers' run
    _array_jobs()


def _state(job: Job) -> _JobState:
    return _STATES[job]


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
    if _state(job).start_failure:
        return START_FAILURE_REASON
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


def _instance_environment(port: int, node_network: tuple[str, str] | None) -> None:
    from docker.models.containers import ContainerCollection

    original_run = ContainerCollection.run
    host_endpoint = f"http://127.0.0.1:{port}"

    def run(self: ContainerCollection, *args: Any, **kwargs: Any) -> Any:
        job = threading.current_thread()  # moto runs each job in a thread of its own
        region = str(getattr(job, "arn", "::::")).split(":")[3] or "us-east-1"
        instance = {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": host_endpoint + CREDENTIALS_PATH,
            "AWS_ENDPOINT_URL": host_endpoint,
        }
        if node_network and kwargs.get("network") == node_network[0]:
            # A node of a multi-node job, on its own network: node_network.py.
            instance = {
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": CREDENTIALS_PATH,
                "AWS_ENDPOINT_URL": f"http://{node_network[1]}:{port}",
            }
        # The job's own variables win, as a job's AWS_ENDPOINT_URL would on AWS (the
        # fault tests send the jobs through a proxy that way).
        kwargs["environment"] = {
            **instance,
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
            **(kwargs.get("environment") or {}),
        }
        return original_run(self, *args, **kwargs)

    ContainerCollection.run = run


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
        if p == "environment":
            return _environment(self)
        return original_property(self, p, default)

    Job._get_container_property = container_property  # type: ignore[method-assign]


def _environment(job: Job) -> list[dict[str, str]]:
    """The definition's variables, overridden by the submission's, then Batch's own."""
    defined = (job.job_definition.container_properties or {}).get("environment")
    variables = {
        **_name_values(defined),
        **_name_values(job.container_overrides.get("environment")),
        "AWS_BATCH_JOB_ID": job.job_id,
        "AWS_BATCH_JOB_ATTEMPT": str(_state(job).attempt),
        "AWS_BATCH_JQ_NAME": job.job_queue.name,
    }
    if "index" in job.array_properties:
        variables["AWS_BATCH_JOB_ARRAY_INDEX"] = str(job.array_properties["index"])
    return [{"name": name, "value": value} for name, value in variables.items()]


def _name_values(entries: Iterable[dict[str, str]] | None) -> dict[str, str]:
    return {entry["name"]: entry["value"] for entry in entries or []}


def _retries() -> None:
    from moto.batch.exceptions import ClientException
    from moto.batch.models import Job
    from moto.batch.responses import BatchResponse

    original_submit = BatchResponse.submit_job
    original_init = Job.__init__
    original_run = Job.run
    original_mark_stopped = Job._mark_stopped
    original_stop_attempt = Job._stop_attempt

    def submit_job(self: BatchResponse) -> str:
        strategy = self._get_param("retryStrategy")
        attempts = (strategy or {}).get("attempts", 1)
        if not 1 <= attempts <= MAX_ATTEMPTS:
            raise ClientException(f"retryStrategy attempts must be 1 to {MAX_ATTEMPTS}")
        # Job.__init__ runs in this thread, before the job's own thread can need it.
        _submitting.retry_strategy = strategy
        try:
            return original_submit(self)
        finally:
            _submitting.retry_strategy = None

    def init(self: Job, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        submitted = getattr(_submitting, "retry_strategy", None)
        _STATES[self] = _JobState(submitted or self.job_definition.retry_strategy or {})

    def run(self: Job) -> None:
        # moto's run is one attempt: it waits, starts the container, marks the job stopped
        # and removes the container. Run it again for each retry.
        state = _state(self)
        while True:
            original_run(self)
            if not state.retrying:
                return
            state.retrying = False
            if self.stop:  # cancelled or terminated while RUNNABLE between attempts
                self._mark_stopped(success=False)
                return
            _next_attempt(self, state)

    def mark_stopped(self: Job, success: bool = True) -> None:
        state = _state(self)
        if state.retrying:
            return  # moto marks the job again on its way out of the failed attempt
        if not success and not self.job_stopped and _should_retry(self, state):
            state.retrying = True
            _requeue(self)
            return
        original_mark_stopped(self, success)

    def stop_attempt(self: Job) -> None:
        original_stop_attempt(self)
        if self.latest_attempt and self.job_stopped_reason:
            self.latest_attempt["statusReason"] = self.job_stopped_reason

    BatchResponse.submit_job = submit_job  # type: ignore[method-assign]
    Job.__init__ = init  # type: ignore[method-assign]
    Job.run = run  # type: ignore[method-assign]
    Job._mark_stopped = mark_stopped  # type: ignore[method-assign]
    Job._stop_attempt = stop_attempt  # type: ignore[method-assign]


def _should_retry(job: Job, state: _JobState) -> bool:
    if job.latest_attempt is None or job.stop:
        return False  # no attempt ran (a dependency failed), or cancelled or terminated
    status_reason = _failure_reason(job)
    if status_reason == TIMEOUT_REASON:
        return False
    if state.attempt >= int(state.retry_strategy.get("attempts", 1)):
        return False
    facts = {
        "onStatusReason": status_reason or "",
        "onReason": state.start_failure or "",
        "onExitCode": "" if job.exit_code is None else str(job.exit_code),
    }
    return _exit_action(state.retry_strategy.get("evaluateOnExit") or [], facts) == "RETRY"


def _exit_action(entries: list[dict[str, str]], facts: dict[str, str]) -> str:
    """The action of the first entry whose every given pattern matches; RETRY if none does.

    A value the attempt does not have (no container reason after a plain non-zero exit, no
    exit code after a start failure) is the empty string, which only "*" matches: that is
    what lets the documented catch-all `{"onReason": "*", "action": "EXIT"}` end a job
    after any exit. Patterns are case-sensitive ("an exact match" in AWS's API reference;
    only the action is documented as case-insensitive).
    """
    for entry in entries:
        patterns = [(entry[key], value) for key, value in facts.items() if key in entry]
        if all(_glob_match(pattern, value) for pattern, value in patterns):
            return entry["action"].upper()
    return "RETRY"


def _glob_match(pattern: str, value: str) -> bool:
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


def _requeue(job: Job) -> None:
    """Close the failed attempt as moto closes a job's last one; the job is RUNNABLE again."""
    from moto.batch.utils import JobStatus

    job.job_stopped_at = datetime.now()
    job.job_stopped_reason = _failure_reason(job)
    job._stop_attempt()
    job.job_stopped_reason = None
    job.latest_attempt = None
    job.status = JobStatus.RUNNABLE


def _next_attempt(job: Job, state: _JobState) -> None:
    """Forget the last attempt's outcome; the next one logs to a stream of its own."""
    state.attempt += 1
    state.start_failure = None
    job.exit_code = None
    job.log_stream_name = None
    job._stream_name = f"{job.job_definition.name}/default/{uuid.uuid4().hex}"


def _start_failures() -> None:
    import docker
    from docker.models.containers import ContainerCollection
    from moto.batch.models import Job

    original_run = ContainerCollection.run
    original_details = Job._container_details
    original_stop_attempt = Job._stop_attempt

    def run(self: ContainerCollection, image: str, command: Any = None, **kwargs: Any) -> Any:
        try:
            self.client.images.get(image)  # instead of a pull, which could only fail, slowly
        except docker.errors.APIError as err:
            _fail_start(
                f"CannotPullContainerError: Error response from daemon: {err.explanation} "
                "(the sandbox pulls from no registry)"
            )
        try:
            return original_run(self, image, command, **kwargs)
        except docker.errors.APIError as err:
            started = _remove_created(self, kwargs.get("name"))
            kind = "CannotStartContainerError" if started else "CannotCreateContainerError"
            _fail_start(f"{kind}: Error response from daemon: {err.explanation}")

    def container_details(self: Job) -> dict[str, Any]:
        details = original_details(self)
        if _state(self).start_failure:
            details["reason"] = _state(self).start_failure
        return details

    def stop_attempt(self: Job) -> None:
        original_stop_attempt(self)
        if self.latest_attempt and _state(self).start_failure:
            self.latest_attempt["container"]["reason"] = _state(self).start_failure

    ContainerCollection.run = run
    Job._container_details = container_details  # type: ignore[method-assign]
    Job._stop_attempt = stop_attempt  # type: ignore[method-assign]


def _fail_start(reason: str) -> NoReturn:
    """Give the job whose thread this is the reason, and end its attempt (moto catches)."""
    from moto.batch.models import Job

    job = threading.current_thread()
    if isinstance(job, Job):
        _state(job).start_failure = reason
    raise RuntimeError(reason)


def _remove_created(containers: Any, name: str | None) -> bool:
    """Remove a container created but not started -> whether there was one.

    moto removes only the containers it got back, and the next attempt reuses the name.
    """
    import docker

    if name is None:
        return False
    try:
        containers.get(name).remove(force=True)
    except docker.errors.NotFound:
        return False
    return True


def _array_jobs() -> None:
    from moto.batch.exceptions import ClientException
    from moto.batch.models import BatchBackend, Job
    from moto.moto_api._internal.managed_state_model import ManagedState

    original_submit = BatchBackend.submit_job
    original_list = BatchBackend.list_jobs
    original_terminate = BatchBackend.terminate_job
    original_cancel = BatchBackend.cancel_job
    original_describe_short = Job.describe_short
    own_status: property = vars(ManagedState)["status"]  # moto's status, with its transitions

    def submit_job(
        self: BatchBackend,
        job_name: str,
        job_def_id: str,
        job_queue: str,
        array_properties: dict[str, int],
        *args: Any,
        **kwargs: Any,
    ) -> tuple[str, str, str]:
        size = (array_properties or {}).get("size")
        if size is not None and size not in ARRAY_SIZES:
            raise ClientException("arrayProperties size must be between 2 and 10000")
        name, job_id, arn = original_submit(
            self, job_name, job_def_id, job_queue, array_properties, *args, **kwargs
        )
        tags = self.tagger.convert_dict_to_tags_input(self.list_tags_for_resource(arn))
        for child in _children(self.get_job_by_id(job_id)):
            self.tagger.tag_resource(child.arn, tags)
        return name, job_id, arn

    def list_jobs(
        self: BatchBackend, job_queue_name: str | None, *args: Any, **kwargs: Any
    ) -> list[Job]:
        jobs = original_list(self, job_queue_name, *args, **kwargs)
        if job_queue_name:  # children append themselves to the queue; AWS lists them apart
            jobs = [job for job in jobs if "index" not in job.array_properties]
        return jobs

    def terminate_job(self: BatchBackend, job_id: str, reason: str) -> None:
        original_terminate(self, job_id, reason)
        for child in _children(self.get_job_by_id(job_id)):
            if not child.job_stopped:
                original_terminate(self, child.job_id, reason)

    def cancel_job(self: BatchBackend, job_id: str, reason: str) -> None:
        children = _children(self.get_job_by_id(job_id))
        if not children:
            original_cancel(self, job_id, reason)
        # Only the children not started yet are cancelled; the others may still succeed, so
        # the parent (whose status follows its children) keeps no reason of its own.
        for child in children:
            original_cancel(self, child.job_id, reason)

    def status(self: Job) -> str | None:
        if self._child_jobs is None:
            return own_status.fget(self)  # type: ignore[misc]
        return _array_status([child.status for child in self._child_jobs])

    def describe_short(self: Job) -> dict[str, Any]:
        result = original_describe_short(self)
        if "index" in self.array_properties:
            result["arrayProperties"] = {"index": self.array_properties["index"]}
        elif self._child_jobs is not None:
            result["arrayProperties"] = {"size": len(self._child_jobs)}
            _array_times(result, self._child_jobs)
        return result

    BatchBackend.submit_job = submit_job  # type: ignore[method-assign]
    BatchBackend.list_jobs = list_jobs  # type: ignore[method-assign]
    BatchBackend.terminate_job = terminate_job  # type: ignore[method-assign]
    BatchBackend.cancel_job = cancel_job  # type: ignore[method-assign]
    Job.status = property(status, own_status.fset)  # type: ignore[assignment]
    Job.describe_short = describe_short  # type: ignore[method-assign]


def _children(job: Job | None) -> list[Job]:
    return (job._child_jobs or []) if job else []


def _array_status(statuses: list[str | None]) -> str:
    """PENDING while any child is unfinished; then FAILED if any child failed."""
    if not all(status in FINAL for status in statuses):
        return "PENDING"
    return "FAILED" if "FAILED" in statuses else "SUCCEEDED"


def _array_times(summary: dict[str, Any], children: list[Job]) -> None:
    """A parent never runs: its startedAt/stoppedAt are its first child's start, last stop."""
    from moto.batch.models import datetime2int_milliseconds

    started = [child.job_started_at for child in children if child.attempts]
    summary.pop("startedAt", None)
    if started:
        summary["startedAt"] = datetime2int_milliseconds(min(started))
    if summary["status"] in FINAL:
        stopped = max(child.job_stopped_at for child in children)
        summary["stoppedAt"] = datetime2int_milliseconds(stopped)
