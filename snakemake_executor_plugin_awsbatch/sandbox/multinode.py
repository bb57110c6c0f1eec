"""Multi-node parallel (MNP) jobs as AWS Batch runs them: moto_patches' patch 9.

moto drops SubmitJob's nodeOverrides, runs a multinode job's node containers one after
another (each waited for before the next starts) on the network every job container
uses, describes the job with one `container.logStreamName` and knows no `<jobId>#<i>`.
AWS Batch (the user guide's "Multi-node parallel jobs" and "Job lifecycle for MNP jobs"):

- node i runs the container of the definition's node ranges covering i, with the
  containerOverrides of nodeOverrides' ranges covering i merged over it (command
  replaced, environment merged by name, resourceRequirements by type);
  nodeOverrides.numNodes replaces numNodes;
- every node is an instance of its own (its own hostname and private IPv4 address), all
  of a job's nodes reach each other on any port; the main node is launched first, the
  child nodes once it runs, all then run at the same time;
- Batch's variables: AWS_BATCH_JOB_ID `<jobId>#<i>`, AWS_BATCH_JOB_NODE_INDEX,
  AWS_BATCH_JOB_NUM_NODES, AWS_BATCH_JOB_MAIN_NODE_INDEX and, on the child nodes only,
  AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS;
- the job's outcome is the main node's: when it exits the job ends and every child node
  still running is stopped; a child exiting early ends nothing. attemptDurationSeconds,
  TerminateJob and CancelJob apply to the whole job, and so does the retry strategy (a
  failed main node: every node starts again);
- DescribeJobs on the job: its status, reason, attempts and nodeProperties, the exit
  information from the main node, no log stream; on `<jobId>#<i>`: that node, with
  nodeDetails, its own container.logStreamName (each node logs to a stream of its own)
  and exitCode. ListJobs(multiNodeJobId=...) lists the nodes.

The sandbox runs every node as a podman container on a bridge network of its own (`up`
creates it, podman.create_node_network), where the sandbox's moto also listens, on the
network's gateway (moto_server.py). Single-node jobs stay on the host network. Each
child node mounts a scratch disk of its own where jobs mount the instance's (node_disk):
what a worker writes there, the main node does not see, as on separate instances. The
disks stay after the job, as the shared one does: the tests look at what was left.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from snakemake_executor_plugin_awsbatch.sandbox import moto_patches

if TYPE_CHECKING:
    from moto.batch.models import Job

logger = logging.getLogger(__name__)

SEPARATOR = "#"  # `<jobId>#<node index>`, as AWS addresses a node
POLL_SECONDS = 0.25
MAX_NODES = 1000  # AWS's limit on numNodes per job


@dataclass
class Node:
    """One node of one attempt."""

    index: int
    main: bool
    stream: str
    status: str = "PENDING"
    container: Any = None  # docker's Container once launched
    address: str | None = None
    exit_code: int | None = None  # set when the node exited by itself
    reason: str | None = None  # container.reason: it could not start
    status_reason: str | None = None
    started_at: datetime | None = None
    stopped_at: datetime | None = None


@dataclass
class _Multinode:
    overrides: dict[str, Any]  # SubmitJob's nodeOverrides
    attempts: list[list[Node]] = field(default_factory=list)  # nodes of each attempt

    @property
    def nodes(self) -> list[Node]:
        return self.attempts[-1] if self.attempts else []


_JOBS: weakref.WeakKeyDictionary[Job, _Multinode] = weakref.WeakKeyDictionary()
_submitting = threading.local()  # the nodeOverrides of the SubmitJob this thread handles


_disks: tuple[Path, Path] | None = None  # (the instance's scratch disk, child nodes' disks)


def apply(network: str | None, disks: tuple[Path, Path] | None = None) -> None:
    """Patch moto; network: the bridge network node containers run on (None: MNP jobs
    fail to start, saying so); disks: moto_patches.apply's node_disks. Apply before
    moto_patches' _retries, which wraps Job.run."""
    global _disks
    _disks = disks
    _submissions()
    _runs(network)
    _descriptions()
    _placement_groups()


def is_multinode(job: Job) -> bool:
    return job.job_definition.type == "multinode" and job in _JOBS


# --- SubmitJob: nodeOverrides -------------------------------------------------------------


def _submissions() -> None:
    from moto.batch.exceptions import ClientException
    from moto.batch.models import Job
    from moto.batch.responses import BatchResponse

    original_submit = BatchResponse.submit_job
    original_init = Job.__init__

    def submit_job(self: BatchResponse) -> str:
        overrides = self._get_param("nodeOverrides")
        definition = self.batch_backend.get_job_definition(self._get_param("jobDefinition") or "")
        if definition is not None and definition.type == "multinode":
            _check(definition.node_properties or {}, overrides or {}, ClientException)
        elif overrides:
            raise ClientException("nodeOverrides apply to multi-node parallel jobs only")
        _submitting.overrides = overrides or {}
        try:
            return original_submit(self)
        finally:
            _submitting.overrides = None

    def init(self: Job, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        if self.job_definition.type == "multinode":
            _JOBS[self] = _Multinode(getattr(_submitting, "overrides", None) or {})

    BatchResponse.submit_job = submit_job  # type: ignore[method-assign]
    Job.__init__ = init  # type: ignore[method-assign]


def _check(properties: dict[str, Any], overrides: dict[str, Any], error: type) -> None:
    """What AWS refuses at SubmitJob: a node no range covers, a main node out of range."""
    count = int(overrides.get("numNodes") or properties.get("numNodes") or 0)
    if not 1 <= count <= MAX_NODES:
        raise error(f"numNodes must be 1 to {MAX_NODES}")
    if not 0 <= int(properties.get("mainNode", 0)) < count:
        raise error("mainNode must be less than numNodes")
    for entry in overrides.get("nodePropertyOverrides") or []:
        _targets(entry["targetNodes"], count, error)
    covered: set[int] = set()
    for entry in properties.get("nodeRangeProperties") or []:
        covered.update(_targets(entry["targetNodes"], count, error))
    if missing := sorted(set(range(count)) - covered):
        raise error(f"no nodeRangeProperties entry covers node {missing[0]} of {count}")


def _targets(spec: str, count: int, error: type = ValueError) -> range:
    """`i`, `i:j`, `i:` or `:j` (inclusive) -> the node indexes, within count."""
    start, colon, end = spec.partition(":")
    try:
        first = int(start) if start else 0
        last = (int(end) if end else count - 1) if colon else first
    except ValueError:
        raise error(f"targetNodes {spec!r} is not i, i:j, i: or :j") from None
    if first < 0 or first > last:
        raise error(f"targetNodes {spec!r} is not a range of nodes")
    return range(first, min(last, count - 1) + 1)


def num_nodes(job: Job) -> int:
    state = _JOBS[job]
    defined = (job.job_definition.node_properties or {}).get("numNodes")
    return int(state.overrides.get("numNodes") or defined or 1)


def main_index(job: Job) -> int:
    return int((job.job_definition.node_properties or {}).get("mainNode", 0))


def node_container(job: Job, index: int) -> dict[str, Any]:
    """The container properties node index runs: the definition's, with the overrides."""
    count = num_nodes(job)
    container: dict[str, Any] = {}
    for entry in (job.job_definition.node_properties or {}).get("nodeRangeProperties") or []:
        if index in _targets(entry["targetNodes"], count):
            container = dict(entry.get("container") or {})
    for entry in _JOBS[job].overrides.get("nodePropertyOverrides") or []:
        if index in _targets(entry["targetNodes"], count):
            container = _override(container, entry.get("containerOverrides") or {})
    return container


def _override(container: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = {**container}
    for key, value in overrides.items():
        if key == "environment":
            merged[key] = _merge(container.get(key), value, "name")
        elif key == "resourceRequirements":
            merged[key] = _merge(container.get(key), value, "type")
        else:
            merged[key] = value  # command, instanceType, vcpus, memory: replaced
    return merged


def _merge(base: list[dict[str, str]] | None, over: list[dict[str, str]], key: str) -> list:
    entries = {entry[key]: entry for entry in base or []}
    entries.update({entry[key]: entry for entry in over or []})
    return list(entries.values())


def node_environment(job: Job, index: int, main_address: str | None) -> dict[str, str]:
    """The container's own variables, then Batch's (as moto_patches._environment)."""
    variables = {
        entry["name"]: entry["value"]
        for entry in node_container(job, index).get("environment") or []
    }
    variables.update(
        {
            "AWS_BATCH_JOB_ID": f"{job.job_id}{SEPARATOR}{index}",
            "AWS_BATCH_JOB_ATTEMPT": str(moto_patches._state(job).attempt),
            "AWS_BATCH_JQ_NAME": job.job_queue.name,
            "AWS_BATCH_JOB_NODE_INDEX": str(index),
            "AWS_BATCH_JOB_NUM_NODES": str(num_nodes(job)),
            "AWS_BATCH_JOB_MAIN_NODE_INDEX": str(main_index(job)),
        }
    )
    if index != main_index(job):
        variables["AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS"] = main_address or ""
    return variables


# --- Running a job: one attempt -----------------------------------------------------------


def _runs(network: str | None) -> None:
    from moto.batch.models import Job

    original_run = Job.run

    def run(self: Job) -> None:
        if not is_multinode(self):
            original_run(self)
            return
        try:
            _run_attempt(self, network)
        except Exception as err:  # as moto's run: a job's thread never raises
            logger.error("multi-node job %s failed: %s", self.job_id, err)
            self._mark_stopped(success=False)

    Job.run = run  # type: ignore[method-assign]


def _run_attempt(job: Job, network: str | None) -> None:
    """One attempt, through the statuses as moto's Job.run goes through them."""
    from moto.batch.utils import JobStatus

    job.advance()
    while job.status == JobStatus.SUBMITTED:
        time.sleep(0.5)
    if job.depends_on and not job._wait_for_dependencies():
        return
    job.advance()
    while job.status == JobStatus.PENDING:
        time.sleep(0.5)
    if job.stop:  # cancelled while waiting
        job._mark_stopped(success=False)
        return
    job.job_started_at = datetime.now()
    job._start_attempt()
    state = _JOBS[job]
    main = main_index(job)
    nodes = [Node(index=i, main=i == main, stream=_stream_name(job)) for i in range(num_nodes(job))]
    state.attempts.append(nodes)
    job.advance()
    while job.status == JobStatus.RUNNABLE:
        time.sleep(0.5)
    job.advance()
    while job.status == JobStatus.STARTING:
        time.sleep(0.5)
    success = False
    try:
        success = _run_nodes(job, nodes, network)
    finally:
        _end_nodes(job, nodes, success)
    job._mark_stopped(success=success)


def _stream_name(job: Job) -> str:
    """moto's scheme for a job's stream (`<definition>/default/<id>`), one per node."""
    return f"{job.job_definition.name}/default/{uuid.uuid4().hex}"


def _run_nodes(job: Job, nodes: list[Node], network: str | None) -> bool:
    """Launch the main node, then the others; wait for the main node -> job succeeded."""
    main = next(node for node in nodes if node.main)
    if not _launch(job, main, network, None):
        return False
    for node in nodes:
        if node.main:
            continue
        if job.stop or not _running(main):
            break  # the job ended before this node was launched
        _launch(job, node, network, main.address)
    deadline = _deadline(job)
    while not job.stop and _running(main):
        for node in nodes:
            if not node.main and node.container is not None and node.stopped_at is None:
                _running(node)
        if deadline and datetime.now() > deadline:
            return False  # moto_patches' _failure_reason tells the timeout
        time.sleep(POLL_SECONDS)
    if job.stop:
        return False
    job.exit_code = main.exit_code
    return main.exit_code == 0


def _deadline(job: Job) -> datetime | None:
    duration = job._get_attempt_duration()
    return job.job_started_at + timedelta(seconds=duration) if duration else None


def _launch(job: Job, node: Node, network: str | None, main_address: str | None) -> bool:
    """Start the node's container -> whether it started (else the node failed to start).

    Through docker's ContainerCollection.run, as moto starts a container, so that
    moto_patches' label, instance environment and start failures apply to it.
    """
    import docker

    # RUNNING from the start request on: the node's own program, asking Batch about itself
    # at once, must not find itself STARTING while podman's answer is on its way.
    node.status, node.started_at = "RUNNING", datetime.now()
    try:
        if network is None:
            moto_patches._fail_start(
                "CannotStartContainerError: this sandbox's moto has no network for the nodes "
                "of multi-node parallel jobs (moto_server --node-network)"
            )
        node.container = job.docker_client.containers.run(
            detach=True,
            log_config=docker.types.LogConfig(type=docker.types.LogConfig.types.JSON),
            network=network,
            **_container_kwargs(job, node, main_address),
        )
    except Exception as err:
        state = moto_patches._state(job)
        node.reason = state.start_failure or f"CannotStartContainerError: {err}"
        node.status, node.status_reason = "FAILED", moto_patches.START_FAILURE_REASON
        node.started_at, node.stopped_at = None, datetime.now()
        # The main node's failure is the attempt's (moto_patches 7); a child's its own.
        state.start_failure = node.reason if node.main else None
        return False
    node.container.reload()
    networks = node.container.attrs.get("NetworkSettings", {}).get("Networks") or {}
    node.address = (networks.get(network) or {}).get("IPAddress") or None
    return True


def _container_kwargs(job: Job, node: Node, main_address: str | None) -> dict[str, Any]:
    import docker

    spec = node_container(job, node.index)
    volumes = {volume["name"]: volume.get("host") or {} for volume in spec.get("volumes") or []}
    command = spec.get("command") or None  # none: the image's CMD
    return {
        "image": spec.get("image", "alpine:latest"),
        "privileged": spec.get("privileged", False),
        "command": job._add_parameters_to_command(command) if command else None,
        "environment": node_environment(job, node.index, main_address),
        "mounts": [
            docker.types.Mount(
                mount["containerPath"],
                _host_path(job, node, volumes[mount["sourceVolume"]]["sourcePath"]),
                type="bind",
                read_only=mount.get("readOnly", False),
            )
            for mount in spec.get("mountPoints") or []
        ],
        "name": f"{job.job_name}-{job.job_id}-{node.index}",
    }


def node_disk(disks: Path, job_id: str, index: int) -> Path:
    """Child node `index`'s scratch disk, under the directory of child nodes' disks."""
    return disks / f"{job_id}-{index}"


def _host_path(job: Job, node: Node, source: str) -> str:
    """The host path a node mounts for `source`: a child node's own disk in place of the
    instance's scratch disk (and any directory on it), else `source` itself."""
    if _disks is None or node.main:
        return source
    disk, node_disks = _disks
    path = Path(source)
    if not path.is_relative_to(disk):
        return source
    own = node_disk(node_disks, job.job_id, node.index) / path.relative_to(disk)
    own.mkdir(parents=True, exist_ok=True)
    return str(own)


def _running(node: Node) -> bool:
    """Whether the node's container still runs; notes its exit when it has ended."""
    if node.container is None or node.stopped_at is not None:
        return False
    node.container.reload()
    if node.container.status in ("created", "running", "paused", "restarting"):
        return True
    node.exit_code = int(node.container.attrs.get("State", {}).get("ExitCode", 0))
    node.stopped_at = datetime.now()
    node.status = "SUCCEEDED" if node.exit_code == 0 else "FAILED"
    if node.exit_code:
        node.status_reason = moto_patches.EXIT_REASON
    return False


def _end_nodes(job: Job, nodes: list[Node], success: bool) -> None:
    """Stop the nodes still running (all at once, each as moto_patches 1 stops a job), keep
    every node's log in a stream of its own, remove the containers.

    A node stopped because the job ended ends as the job does; a main node stopped (the
    job was terminated or timed out) gives the job the exit code it was stopped with, as
    moto_patches 2 reports a stopped job's.
    """
    launched = [node for node in nodes if node.container is not None]
    running = [node for node in launched if _running(node)]
    if running:
        with ThreadPoolExecutor(max_workers=len(running)) as pool:
            list(pool.map(lambda node: _stop(node.container), running))
    ended = "SUCCEEDED" if success else "FAILED"
    now = datetime.now()
    for node in nodes:
        if node in running:
            node.status, node.stopped_at = ended, now
            if node.main:
                node.exit_code = job.exit_code = _exit_code(node)
        elif node.container is None and node.status == "PENDING":
            node.status, node.stopped_at = ended, now  # never launched: the job ended first
    for node in launched:
        try:
            _keep_log(job, node)
        except Exception as err:
            logger.error("no log of node %s of job %s: %s", node.index, job.job_id, err)
        _remove(node.container)


def _stop(container: Any) -> None:
    try:
        container.kill()  # moto_patches 1: SIGTERM, the grace, SIGKILL
    except Exception as err:
        logger.error("stopping %s: %s", container.name, err)


def _exit_code(node: Node) -> int | None:
    try:
        node.container.reload()
        return int(node.container.attrs.get("State", {}).get("ExitCode"))
    except Exception:
        return None


def _remove(container: Any) -> None:
    try:
        container.remove(force=True)
    except Exception as err:
        logger.error("removing %s: %s", container.name, err)


def _keep_log(job: Job, node: Node) -> None:
    """The container's stdout and stderr into the node's stream, as moto keeps a job's."""
    from moto.core.parse import default_timestamp_parser
    from moto.core.utils import unix_time_millis

    events = []
    for stdout, stderr in ((True, False), (False, True)):
        output = node.container.logs(stdout=stdout, stderr=stderr, timestamps=True)
        for line in output.decode(errors="replace").split("\n"):
            if not line:
                continue
            stamp, _, message = line.partition(" ")
            millis = unix_time_millis(default_timestamp_parser(stamp))
            events.append({"timestamp": millis, "message": message.strip()})
    events.sort(key=lambda event: event["timestamp"])
    logs = job._log_backend
    logs.ensure_log_group(job._log_group)
    logs.ensure_log_stream(job._log_group, node.stream)
    if events:
        logs.put_log_events(job._log_group, node.stream, events)


# --- DescribeJobs, ListJobs ---------------------------------------------------------------


def _descriptions() -> None:
    from moto.batch.models import BatchBackend, Job
    from moto.batch.responses import BatchResponse

    original_describe = Job.describe
    original_describe_short = Job.describe_short
    original_describe_jobs = BatchBackend.describe_jobs
    original_list_jobs = BatchResponse.list_jobs

    def describe(self: Job) -> dict[str, Any]:
        result = original_describe(self)
        if is_multinode(self):
            _describe_parent(self, result)
        return result

    def describe_short(self: Job) -> dict[str, Any]:
        result = original_describe_short(self)
        if is_multinode(self):
            result["nodeProperties"] = {"numNodes": num_nodes(self)}
        return result

    def describe_jobs(self: BatchBackend, jobs: list[str] | None) -> list[dict[str, Any]]:
        wanted = list(jobs or [])
        nodes = [_node_of(self, job_id) for job_id in wanted if SEPARATOR in job_id]
        others = [job_id for job_id in wanted if SEPARATOR not in job_id]
        found = original_describe_jobs(self, others) if others or not wanted else []
        return found + [describe_node(*node) for node in nodes if node is not None]

    def list_jobs(self: BatchResponse) -> str:
        parent_id = self._get_param("multiNodeJobId")
        if not parent_id:
            return original_list_jobs(self)
        import json

        parent = self.batch_backend.get_job_by_id(parent_id)
        wanted = self._get_param("jobStatus")
        summaries = []
        if parent is not None and is_multinode(parent):
            for index in range(num_nodes(parent)):
                summary = _node_summary(parent, index)
                if wanted is None or summary["status"] == wanted:
                    summaries.append(summary)
        return json.dumps({"jobSummaryList": summaries})

    Job.describe = describe  # type: ignore[method-assign]
    Job.describe_short = describe_short  # type: ignore[method-assign]
    BatchBackend.describe_jobs = describe_jobs  # type: ignore[method-assign]
    BatchResponse.list_jobs = list_jobs  # type: ignore[method-assign]


def _describe_parent(job: Job, result: dict[str, Any]) -> None:
    """No container of its own and no log stream; its exit code is the main node's."""
    result.pop("container", None)
    if job.job_stopped and job.exit_code is not None:
        result["container"] = {"exitCode": job.exit_code}
    result["nodeProperties"] = {
        **(job.job_definition.node_properties or {}),
        "numNodes": num_nodes(job),
        "mainNode": main_index(job),
    }
    for attempt in result.get("attempts") or []:
        attempt["container"] = {
            key: value
            for key, value in (attempt.get("container") or {}).items()
            if key != "logStreamName" and value is not None
        }


def _node_of(backend: Any, node_id: str) -> tuple[Job, int] | None:
    parent_id, _, index = node_id.rpartition(SEPARATOR)
    parent = backend.get_job_by_id(parent_id)
    if parent is None or not is_multinode(parent) or not index.isdigit():
        return None
    return (parent, int(index)) if int(index) < num_nodes(parent) else None


def _node(job: Job, index: int) -> Node | None:
    nodes = _JOBS[job].nodes
    return nodes[index] if index < len(nodes) else None


def _node_status(job: Job, node: Node | None) -> str:
    """Before its attempt has nodes (or between attempts), a node is where the job is."""
    status = str(job.status)
    if node is None or status in ("SUBMITTED", "PENDING", "RUNNABLE"):
        return status
    return node.status


def _node_summary(job: Job, index: int) -> dict[str, Any]:
    from moto.batch.models import datetime2int_milliseconds

    node = _node(job, index)
    status = _node_status(job, node)
    summary: dict[str, Any] = {
        "jobId": f"{job.job_id}{SEPARATOR}{index}",
        "jobArn": f"{job.arn}{SEPARATOR}{index}",
        "jobName": job.job_name,
        "createdAt": datetime2int_milliseconds(job.job_created_at),
        "status": status,
        "jobDefinition": job.job_definition.arn,
        "nodeProperties": {
            "isMainNode": index == main_index(job),
            "nodeIndex": index,
            "numNodes": num_nodes(job),
        },
    }
    if node is not None and status not in ("SUBMITTED", "PENDING", "RUNNABLE"):
        if node.status_reason:
            summary["statusReason"] = node.status_reason
        if node.started_at:
            summary["startedAt"] = datetime2int_milliseconds(node.started_at)
        if node.stopped_at:
            summary["stoppedAt"] = datetime2int_milliseconds(node.stopped_at)
        if node.exit_code is not None:
            summary["container"] = {"exitCode": node.exit_code}
    return summary


def describe_node(job: Job, index: int) -> dict[str, Any]:
    """DescribeJobs' answer for `<jobId>#<index>`."""
    node = _node(job, index)
    result = _node_summary(job, index)
    result.pop("nodeProperties")
    spec = node_container(job, index)
    container: dict[str, Any] = {
        "image": spec.get("image"),
        "command": spec.get("command") or [],
        "environment": spec.get("environment") or [],
        "resourceRequirements": spec.get("resourceRequirements") or [],
        "volumes": spec.get("volumes") or [],
        "mountPoints": spec.get("mountPoints") or [],
    }
    if node is not None and str(job.status) not in ("SUBMITTED", "PENDING", "RUNNABLE"):
        container.update(_node_container(node))
    result.update(
        {
            "jobQueue": job.job_queue.arn,
            "dependsOn": job.depends_on or [],
            "parameters": job.parameters,
            "tags": job.backend.list_tags_for_resource(job.arn),
            "nodeDetails": {"nodeIndex": index, "isMainNode": index == main_index(job)},
            "container": container,
            "attempts": [_node_attempt(nodes[index]) for nodes in _finished(job)],
        }
    )
    if job.timeout:
        result["timeout"] = job.timeout
    return result


def _node_container(node: Node) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if node.container is not None:
        details["logStreamName"] = node.stream
    if node.exit_code is not None:
        details["exitCode"] = node.exit_code
    if node.reason:
        details["reason"] = node.reason
    if node.address:
        details["networkInterfaces"] = [{"privateIpv4Address": node.address}]
    return details


def _finished(job: Job) -> list[list[Node]]:
    attempts = _JOBS[job].attempts
    return attempts if job.job_stopped else attempts[:-1]


def _node_attempt(node: Node) -> dict[str, Any]:
    from moto.batch.models import datetime2int_milliseconds

    attempt: dict[str, Any] = {"container": _node_container(node)}
    if node.started_at:
        attempt["startedAt"] = datetime2int_milliseconds(node.started_at)
    if node.stopped_at:
        attempt["stoppedAt"] = datetime2int_milliseconds(node.stopped_at)
    if node.status_reason:
        attempt["statusReason"] = node.status_reason
    return attempt


# --- CloudFormation: AWS::EC2::PlacementGroup ---------------------------------------------


def _placement_groups() -> None:
    """moto has no EC2 placement groups, and its CloudFormation skips the resource, so the
    multi-node compute environment's `PlacementGroup: !Ref PlacementGroup` came out empty.
    This stand-in gives the group a name (as CloudFormation generates one on AWS), which
    the compute environment then names; EC2 still does not know it."""
    from moto.cloudformation import parsing

    global _PLACEMENT_GROUP
    # A module-level reference: CloudFormationModel.__subclasses__() holds weak ones.
    _PLACEMENT_GROUP = _placement_group_model()
    parsing.get_model_map.cache_clear()  # the new model joins moto's lookup
    parsing.get_name_type_map.cache_clear()


_PLACEMENT_GROUP: type | None = None


def _placement_group_model() -> type:
    from moto.core.common_models import CloudFormationModel

    class _PlacementGroup(CloudFormationModel):
        def __init__(self, name: str, strategy: str | None):
            self.name = name
            self.strategy = strategy

        @property
        def physical_resource_id(self) -> str:
            return self.name

        @staticmethod
        def cloudformation_name_type() -> str:
            return ""

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::EC2::PlacementGroup"

        @classmethod
        def has_cfn_attr(cls, attr: str) -> bool:
            return attr == "GroupName"

        def get_cfn_attribute(self, attribute_name: str) -> str:
            return self.name

        @classmethod
        def create_from_cloudformation_json(
            cls,
            resource_name: str,
            cloudformation_json: dict[str, Any],
            account_id: str,
            region_name: str,
            **kwargs: Any,
        ) -> Any:
            properties = cloudformation_json.get("Properties") or {}
            return cls(resource_name, properties.get("Strategy"))

        @classmethod
        def update_from_cloudformation_json(
            cls,
            original_resource: Any,
            new_resource_name: str,
            cloudformation_json: dict[str, Any],
            account_id: str,
            region_name: str,
        ) -> Any:
            return original_resource

        @classmethod
        def delete_from_cloudformation_json(
            cls,
            resource_name: str,
            cloudformation_json: dict[str, Any],
            account_id: str,
            region_name: str,
        ) -> None:
            return None

    return _PlacementGroup
