"""Job definitions: one per container shape, named by a hash of its content, reused.

Everything that differs between jobs (command, environment, vCPU, memory, GPU,
timeout, retries) goes into the SubmitJob request, so a whole run, and the next
run, share one definition per image/roles/volumes/platform. A definition is looked
up by name before it is registered, so nothing accumulates across runs.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from typing import Any

from snakemake_executor_plugin_awsbatch import multinode, runtime
from snakemake_executor_plugin_awsbatch.config import EfsMount

NAME_PREFIX = "snakemake-awsbatch-"
SCRATCH_VOLUME = "scratch"
RUNTIME_VOLUME = "awsbatch-runtime"


@dataclass(frozen=True)
class ContainerShape:
    image: str
    job_role: str | None
    execution_role: str | None
    fargate: bool
    log_group: str
    region: str
    efs: tuple[EfsMount, ...]
    scratch_root: str
    # A tool image's: where the instance keeps the job runtimes (mounted read-only).
    runtime_root: str | None = None
    nodes: int = 1  # more: a multi-node parallel job's definition, every node alike


def job_definition_request(shape: ContainerShape) -> dict[str, Any]:
    """The RegisterJobDefinition request for a shape (name included)."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if not shape.fargate:
        # Fargate has no host volumes; its jobs use the task's own storage.
        volumes.append({"name": SCRATCH_VOLUME, "host": {"sourcePath": shape.scratch_root}})
        mounts.append(
            {"sourceVolume": SCRATCH_VOLUME, "containerPath": shape.scratch_root, "readOnly": False}
        )
    if shape.runtime_root:
        volumes.append({"name": RUNTIME_VOLUME, "host": {"sourcePath": shape.runtime_root}})
        mounts.append(
            {"sourceVolume": RUNTIME_VOLUME, "containerPath": runtime.MOUNT, "readOnly": True}
        )
    for index, efs in enumerate(shape.efs):
        name = f"efs{index}"
        config: dict[str, Any] = {
            "fileSystemId": efs.file_system_id,
            "transitEncryption": "ENABLED",
        }
        if efs.access_point_id:
            config["authorizationConfig"] = {"accessPointId": efs.access_point_id, "iam": "ENABLED"}
        volumes.append({"name": name, "efsVolumeConfiguration": config})
        mounts.append(
            {"sourceVolume": name, "containerPath": efs.container_path, "readOnly": False}
        )

    props: dict[str, Any] = {
        "image": shape.image,
        # Placeholders: every job overrides command and resources at submission.
        "command": ["true"],
        "resourceRequirements": [
            {"type": "VCPU", "value": "0.25" if shape.fargate else "1"},
            {"type": "MEMORY", "value": "512"},
        ],
        "volumes": volumes,
        "mountPoints": mounts,
        # A minimal init as PID 1 passes Batch's SIGTERM on to the job-side runner and
        # reaps the orphans of the rule's tools.
        "linuxParameters": {"initProcessEnabled": True},
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {"awslogs-group": shape.log_group, "awslogs-region": shape.region},
        },
    }
    if shape.job_role:
        props["jobRoleArn"] = shape.job_role
    if shape.fargate:
        props["executionRoleArn"] = shape.execution_role
        props["fargatePlatformConfiguration"] = {"platformVersion": "LATEST"}
        props["networkConfiguration"] = {"assignPublicIp": "DISABLED"}

    request: dict[str, Any] = {
        "type": "container",
        "containerProperties": props,
        "platformCapabilities": ["FARGATE" if shape.fargate else "EC2"],
        "propagateTags": True,
    }
    if shape.nodes > 1:
        request = multinode.job_definition(request, shape.nodes)
    digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
    request["jobDefinitionName"] = NAME_PREFIX + digest[:32]
    return request


class JobDefinitions:
    """Resolves shapes to `name:revision`, registering only what does not exist yet."""

    def __init__(self, batch: Any, tags: dict[str, str]):
        self._batch = batch
        self._tags = tags
        self._lock = threading.Lock()
        self._resolved: dict[ContainerShape, str] = {}

    def resolve(self, shape: ContainerShape) -> str:
        with self._lock:
            if shape not in self._resolved:
                self._resolved[shape] = self._find_or_register(job_definition_request(shape))
            return self._resolved[shape]

    def _find_or_register(self, request: dict[str, Any]) -> str:
        name = request["jobDefinitionName"]
        # The name is a hash of the content: any ACTIVE revision is the same definition.
        found = self._batch.describe_job_definitions(jobDefinitionName=name, status="ACTIVE")
        revisions = [d["revision"] for d in found.get("jobDefinitions", [])]
        if revisions:
            return f"{name}:{max(revisions)}"
        registered = self._batch.register_job_definition(**request, tags=self._tags)
        return f"{registered['jobDefinitionName']}:{registered['revision']}"
