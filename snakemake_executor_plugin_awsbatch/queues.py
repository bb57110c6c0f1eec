"""Which queue a job goes to, and whether that queue can run it.

Checks happen before the first submission: the queue exists, is ENABLED and
VALID, and some instance type of its compute environments can hold the job.
Results are cached per queue; each queue costs a handful of Describe calls once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from snakemake_executor_plugin_awsbatch import runtime
from snakemake_executor_plugin_awsbatch.errors import ConfigError
from snakemake_executor_plugin_awsbatch.resources import JobResources

QUEUE_RESOURCE = "awsbatch_queue"

# Instance families behind Batch's symbolic instance types.
SYMBOLIC_FAMILIES = {
    "optimal": ["c4", "m4", "r4"],
    "default_x86_64": ["c6i", "m6i", "r6i"],
    "default_arm64": ["c6g", "m6g", "r6g"],
}


@dataclass(frozen=True)
class Capacity:
    """The largest job one compute environment can place."""

    vcpus: float
    memory_mib: int
    gpus: int

    def holds(self, res: JobResources) -> bool:
        return (
            res.vcpus <= self.vcpus and res.memory_mib <= self.memory_mib and res.gpus <= self.gpus
        )

    def describe(self) -> str:
        gpu = f", {self.gpus} GPU" if self.gpus else ""
        return f"{self.vcpus:g} vCPU, {self.memory_mib} MiB{gpu}"


@dataclass(frozen=True)
class Environment:
    """A compute environment of a queue, as far as the plugin's checks go."""

    name: str
    # The job runtimes its instances install (the EC2 tag runtime.RUNTIMES_TAG, on the
    # instances or on the environment itself).
    runtimes: frozenset[str]
    # computeResources.type: EC2, SPOT, FARGATE or FARGATE_SPOT; UNMANAGED for an
    # unmanaged environment (which has no computeResources).
    kind: str = "EC2"


@dataclass(frozen=True)
class QueueInfo:
    name: str
    arn: str
    fargate: bool
    # The instance shapes no other shape dominates; empty when the environments
    # are unmanaged or Fargate (nothing to check against here).
    capacities: tuple[Capacity, ...]
    environments: tuple[Environment, ...] = ()  # in the queue's order

    def fits(self, res: JobResources) -> bool:
        return not self.capacities or any(c.holds(res) for c in self.capacities)

    def largest(self) -> str:
        return " or ".join(c.describe() for c in self.capacities)


def route(
    rules: Iterable[str],
    resources: Mapping[str, Any],
    default_queue: str,
    priority_queue: str,
    priority_rules: frozenset[str],
) -> str:
    """The queue for a job: its `awsbatch_queue` resource, else priority rules, else default."""
    wanted = resources.get(QUEUE_RESOURCE)
    if wanted:
        wanted = str(wanted).strip()
        return {"default": default_queue, "priority": priority_queue}.get(wanted, wanted)
    if priority_rules.intersection(rules):
        return priority_queue
    return default_queue


class QueueInspector:
    """Looks queues up once, checks them, and answers whether a job fits."""

    def __init__(self, batch: Any, ec2: Any):
        self._batch = batch
        self._ec2 = ec2
        self._lock = threading.Lock()
        self._queues: dict[str, QueueInfo] = {}

    def get(self, queue: str) -> QueueInfo:
        with self._lock:
            if queue not in self._queues:
                self._queues[queue] = self._inspect(queue)
            return self._queues[queue]

    def check_fit(self, rule: str, queue: str, res: JobResources) -> None:
        info = self.get(queue)
        if not info.fits(res):
            raise ConfigError(
                f"Rule {rule}: asks for {res.describe()} but no instance type of queue "
                f"{info.name} holds that; the largest that fits is {info.largest()}. "
                "Lower the rule's threads/mem_mb/gpu or send it to a larger queue "
                "(resources: awsbatch_queue='QUEUE')"
            )

    def check_runtime(self, rule: str, queue: str, image: str, key: str) -> None:
        """A tool image's job needs the runtime `key` on every instance the queue may use."""
        info = self.get(queue)
        how = (
            f"build and push the runtime {key} and list it in the stack's RuntimeKeys "
            "(docs/tool-images.md), or run the rule in the default image"
        )
        if info.fargate:
            raise ConfigError(
                f"Rule {rule} runs its own image {image}, which needs the job runtime from "
                f"the instance, but queue {info.name} runs on Fargate, which cannot mount it; "
                "send the rule to an EC2 queue (resources: awsbatch_queue='QUEUE')"
            )
        for env in info.environments:
            if key not in env.runtimes:
                has = " ".join(sorted(env.runtimes)) or "none"
                raise ConfigError(
                    f"Rule {rule} runs its own image {image}, which needs the job runtime "
                    f"{key} on the instances, but compute environment {env.name} of queue "
                    f"{info.name} provides {has} (its tag {runtime.RUNTIMES_TAG}); {how}"
                )

    def _inspect(self, queue: str) -> QueueInfo:
        found = self._batch.describe_job_queues(jobQueues=[queue]).get("jobQueues", [])
        if not found:
            raise ConfigError(
                f"Batch job queue {queue!r} does not exist in this account and region; "
                "check --awsbatch-default-queue/--awsbatch-priority-queue (or the rule's "
                "awsbatch_queue resource) and the region"
            )
        q = found[0]
        if q.get("state") != "ENABLED" or q.get("status") != "VALID":
            reason = q.get("statusReason") or "no reason given"
            raise ConfigError(
                f"Batch job queue {q['jobQueueName']} is {q.get('state')}/{q.get('status')} "
                f"({reason}); enable it or fix its compute environments before running"
            )
        order = sorted(q.get("computeEnvironmentOrder", []), key=lambda ce: ce["order"])
        arns = [ce["computeEnvironment"] for ce in order]
        found = self._batch.describe_compute_environments(computeEnvironments=arns).get(
            "computeEnvironments", []
        )
        envs = sorted(found, key=lambda e: _position(e, arns))  # the queue's order
        fargate = any(
            (e.get("computeResources") or {}).get("type", "").startswith("FARGATE") for e in envs
        )
        capacities = [] if fargate else [c for e in envs for c in self._capacities(e)]
        return QueueInfo(
            q["jobQueueName"],
            q["jobQueueArn"],
            fargate,
            _frontier(capacities),
            tuple(_environment(e) for e in envs),
        )

    def _capacities(self, env: Mapping[str, Any]) -> list[Capacity]:
        """One capacity per instance type the environment may launch."""
        compute = env.get("computeResources") or {}
        names = compute.get("instanceTypes") or []
        if env.get("type") != "MANAGED" or not names:
            return []
        max_vcpus = compute.get("maxvCpus") or float("inf")
        return [
            Capacity(
                vcpus=min(t["VCpuInfo"]["DefaultVCpus"], max_vcpus),
                memory_mib=t["MemoryInfo"]["SizeInMiB"],
                gpus=_gpus(t),
            )
            for t in self._instance_types(names)
        ]

    def _instance_types(self, names: Iterable[str]) -> list[dict[str, Any]]:
        patterns: list[str] = []
        for name in names:
            families = SYMBOLIC_FAMILIES.get(name, [name])
            # "m5" means the whole family; "m5.large" one type.
            patterns += [f if "." in f else f"{f}.*" for f in families]
        paginator = self._ec2.get_paginator("describe_instance_types")
        pages = paginator.paginate(Filters=[{"Name": "instance-type", "Values": patterns}])
        return [t for page in pages for t in page.get("InstanceTypes", [])]


def _position(env: Mapping[str, Any], refs: list[str]) -> int:
    """Where a described environment stands in the queue's list (names or ARNs):
    DescribeComputeEnvironments answers in an order of its own."""
    for i, ref in enumerate(refs):
        if ref in (env.get("computeEnvironmentArn"), env.get("computeEnvironmentName")):
            return i
    return len(refs)


def _environment(env: Mapping[str, Any]) -> Environment:
    tags = {
        **(env.get("tags") or {}),
        **((env.get("computeResources") or {}).get("tags") or {}),
    }
    keys = frozenset(str(tags.get(runtime.RUNTIMES_TAG, "")).split())
    name = env.get("computeEnvironmentName") or env.get("computeEnvironmentArn", "?")
    kind = str((env.get("computeResources") or {}).get("type") or "UNMANAGED")
    return Environment(name, keys, kind)


def _gpus(instance_type: Mapping[str, Any]) -> int:
    gpus = (instance_type.get("GpuInfo") or {}).get("Gpus", [])
    return sum(g.get("Count", 0) for g in gpus)


def _frontier(capacities: list[Capacity]) -> tuple[Capacity, ...]:
    """Drop every shape another shape holds entirely: what remains is "the largest"."""
    unique = set(capacities)

    def dominated(c: Capacity) -> bool:
        return any(
            o != c and o.vcpus >= c.vcpus and o.memory_mib >= c.memory_mib and o.gpus >= c.gpus
            for o in unique
        )

    return tuple(sorted((c for c in unique if not dominated(c)), key=lambda c: c.vcpus))
