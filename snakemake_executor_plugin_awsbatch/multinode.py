"""Rules that run as one Batch multi-node parallel (MNP) job: `resources: awsbatch_nodes=N`.

Each of the N nodes is sized from the rule as a single job is (threads, mem_mb, gpu) and
runs the same runner; the main node (index 0) runs the rule's command once every other
node has joined it (jobside/nodes.py). This module is the submitting side: how many nodes
a job asks for, which queue may run it, and how a single job's definition and SubmitJob
request become a multi-node one. MNP jobs are never grouped into arrays (Batch has no
multi-node arrays) and never run on spot or Fargate, which Batch does not offer for them.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from snakemake_executor_plugin_awsbatch.errors import ConfigError
from snakemake_executor_plugin_awsbatch.jobside.manifest import NodeGroup
from snakemake_executor_plugin_awsbatch.queues import QueueInfo

NODES_RESOURCE = "awsbatch_nodes"
# Which nodes get the job's inputs: "main" (the default; the workers get the workflow's
# sources) or "all" (for programs whose every rank reads them).
NODE_INPUTS_RESOURCE = "awsbatch_node_inputs"
NODE_INPUTS = ("main", "all")
MAIN_NODE = 0
ALL_NODES = f"{MAIN_NODE}:"
# Compute environment types that can run MNP jobs.
CAPABLE_KINDS = frozenset({"EC2", "UNMANAGED"})


def node_count(label: str, resources: Mapping[str, Any]) -> int:
    """The nodes a job asks for: 1 (a single job) unless awsbatch_nodes says more."""
    value = resources.get(NODES_RESOURCE)
    if value is None:
        return 1
    try:
        count = int(str(value).strip())
    except ValueError:
        count = 0
    if count < 1 or isinstance(value, bool) or str(value).strip() != str(count):
        raise ConfigError(
            f"Rule {label}: resource {NODES_RESOURCE}={value!r} is not a whole number of "
            f"nodes; write e.g. {NODES_RESOURCE}=4 (1 runs it as a single job)"
        )
    return count


def all_node_inputs(label: str, resources: Mapping[str, Any]) -> bool:
    value = str(resources.get(NODE_INPUTS_RESOURCE) or "main").strip()
    if value not in NODE_INPUTS:
        raise ConfigError(
            f"Rule {label}: resource {NODE_INPUTS_RESOURCE}={value!r} is neither 'main' "
            "(inputs on the main node only, the default) nor 'all' (on every node)"
        )
    return value == "all"


def no_queue(label: str, nodes: int) -> ConfigError:
    return ConfigError(
        f"Rule {label} asks for {nodes} nodes ({NODES_RESOURCE}) but no multi-node queue is "
        "set: set --awsbatch-multinode-queue (a stack deployed with "
        "CreateMultiNodeEnvironment=true provides one through --awsbatch-stack), or drop "
        "the resource to run the rule on one node"
    )


def check_queue(label: str, nodes: int, info: QueueInfo) -> None:
    """ConfigError unless every compute environment of the queue can run MNP jobs."""
    unable = [f"{e.name} ({e.kind})" for e in info.environments if e.kind not in CAPABLE_KINDS]
    if info.fargate or unable:
        which = ", ".join(unable) or "on Fargate"
        raise ConfigError(
            f"Rule {label} asks for {nodes} nodes, but queue {info.name} cannot run "
            f"multi-node parallel jobs: its compute environments {which} are not EC2 "
            "on-demand (Batch runs such jobs on neither spot nor Fargate); set "
            "--awsbatch-multinode-queue to a queue of EC2 on-demand environments"
        )


def job_definition(single: dict[str, Any], nodes: int) -> dict[str, Any]:
    """A single job's RegisterJobDefinition request (without its name) as a multi-node
    one: every node runs the same container."""
    request = {key: value for key, value in single.items() if key != "containerProperties"}
    request["type"] = "multinode"
    request["nodeProperties"] = {
        "numNodes": nodes,
        "mainNode": MAIN_NODE,
        "nodeRangeProperties": [
            {"targetNodes": ALL_NODES, "container": single["containerProperties"]}
        ],
    }
    return request


def submit_request(single: dict[str, Any]) -> dict[str, Any]:
    """A single job's SubmitJob request as a multi-node one: the same overrides on every
    node."""
    request = {key: value for key, value in single.items() if key != "containerOverrides"}
    request["nodeOverrides"] = {
        "nodePropertyOverrides": [
            {"targetNodes": ALL_NODES, "containerOverrides": single["containerOverrides"]}
        ]
    }
    return request


def node_group(
    nodes: int, slots: float, join_seconds: int, sources: int, all_inputs: bool
) -> NodeGroup:
    """The manifest's part for the nodes, with a fresh secret for this job alone."""
    return NodeGroup(
        count=nodes,
        slots=max(1, int(slots)),
        secret=secrets.token_hex(32),
        join_seconds=join_seconds,
        sources=sources,
        all_inputs=all_inputs,
    )


def main_node_job_id(detail: Mapping[str, Any]) -> str | None:
    """The main node's own job id (`<job id>#<index>`) of a multi-node job's description,
    whose log stream is the main node's; None for any other job."""
    properties = detail.get("nodeProperties")
    if not properties or "#" in str(detail.get("jobId", "#")):
        return None
    return f"{detail['jobId']}#{properties.get('mainNode', MAIN_NODE)}"
