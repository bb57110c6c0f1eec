"""Where and how one Snakemake job runs on Batch: queue, resources, image, job definition."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from snakemake_executor_plugin_awsbatch import images, multinode, resource_keys
from snakemake_executor_plugin_awsbatch.config import PluginConfig
from snakemake_executor_plugin_awsbatch.errors import ConfigError
from snakemake_executor_plugin_awsbatch.jobdef import ContainerShape, JobDefinitions
from snakemake_executor_plugin_awsbatch.queues import QUEUE_RESOURCE, QueueInspector, route
from snakemake_executor_plugin_awsbatch.resources import JobResources, fit_fargate, job_resources


@dataclass(frozen=True)
class JobPlan:
    label: str  # the rule's name, or the group job's name
    queue: str
    resources: JobResources
    image: str
    job_definition: str
    runtime: str | None = None  # a tool image's: the key of the job runtime it runs with
    nodes: int = 1  # more: a multi-node parallel job (multinode.py)
    all_node_inputs: bool = False  # its inputs on every node, not only the main one


class Planner:
    def __init__(
        self,
        config: PluginConfig,
        region: str,
        queues: QueueInspector,
        job_definitions: JobDefinitions,
        runtime_key: str,
    ):
        self.config = config
        self.region = region
        self.queues = queues
        self.job_definitions = job_definitions
        self.runtime_key = runtime_key

    def queue_of(self, job: Any) -> str:
        nodes = multinode.node_count(_label(job), job.resources)
        if nodes > 1 and not job.resources.get(QUEUE_RESOURCE):
            if not self.config.multinode_queue:
                raise multinode.no_queue(_label(job), nodes)
            return self.config.multinode_queue
        return route(
            job.rules,
            job.resources,
            self.config.default_queue,
            self.config.priority_queue,
            self.config.priority_rules,
        )

    def plan(self, job: Any, queue: str | None = None) -> JobPlan:
        """The job's plan; raises ConfigError when it cannot run where it is sent."""
        label = _label(job)
        typos = resource_keys.unknown(job.resources.keys())
        if typos:
            raise ConfigError(
                f"Rule {label}: resource {typos[0]} is not one the plugin reads; it reads "
                f"{', '.join(sorted(resource_keys.KNOWN))} (docs/reference.md)"
            )
        nodes = multinode.node_count(label, job.resources)
        queue = queue or self.queue_of(job)
        info = self.queues.get(queue)
        if nodes > 1:
            multinode.check_queue(label, nodes, info)
        all_node_inputs = multinode.all_node_inputs(label, job.resources)
        wanted = job_resources(label, job.resources, job.threads, self.config.default_mem_mb)
        resources = fit_fargate(label, wanted) if info.fargate else wanted
        if info.fargate and not self.config.execution_role:
            raise ConfigError(
                f"Queue {info.name} runs on Fargate, which needs an execution role: set "
                "--awsbatch-execution-role"
            )
        self.queues.check_fit(label, queue, resources)
        image = images.job_image(job, self.config.image)
        if image.tool:
            self.queues.check_runtime(label, queue, image.reference, self.runtime_key)
        shape = ContainerShape(
            image=image.reference,
            job_role=self.config.job_role,
            execution_role=self.config.execution_role if info.fargate else None,
            fargate=info.fargate,
            log_group=self.config.log_group,
            region=self.region,
            efs=self.config.efs,
            scratch_root=self.config.scratch_root,
            runtime_root=self.config.runtime_root if image.tool else None,
            nodes=nodes,
        )
        return JobPlan(
            label,
            queue,
            resources,
            image.reference,
            self.job_definitions.resolve(shape),
            self.runtime_key if image.tool else None,
            nodes,
            all_node_inputs and nodes > 1,
        )

    def plan_runtime(self, plan: JobPlan, queue: str) -> None:
        """ConfigError unless `queue` can give the planned tool-image job its runtime."""
        if plan.runtime:
            self.queues.check_runtime(plan.label, queue, plan.image, plan.runtime)


def _label(job: Any) -> str:
    """The rule's name, or the group job's name."""
    return str(job.name if job.is_group() else job.rule.name)
