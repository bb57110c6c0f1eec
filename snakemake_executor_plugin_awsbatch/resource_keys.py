"""The per-rule resources the plugin reads: one list for the reference page and the check.

docs/reference.md is generated from RESOURCE_KEYS (tools/docs_reference.py), and a rule
with an `awsbatch_*` resource the plugin does not read (a typo such as `awsbatch_node`)
is refused before anything is submitted (`unknown`), instead of being silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from snakemake_executor_plugin_awsbatch.images import IMAGE_RESOURCE
from snakemake_executor_plugin_awsbatch.multinode import NODE_INPUTS_RESOURCE, NODES_RESOURCE
from snakemake_executor_plugin_awsbatch.queues import QUEUE_RESOURCE

PREFIX = "awsbatch_"


@dataclass(frozen=True)
class ResourceKey:
    names: tuple[str, ...]  # one key, or its spellings (mem_mb, mem, mem_mib)
    batch: str  # what it becomes on Batch
    default: str


RESOURCE_KEYS = (
    ResourceKey(("threads",), "`VCPU` (whole vCPUs)", "1"),
    ResourceKey(
        ("mem_mb", "mem", "mem_mib"),
        "`MEMORY` in MiB (Snakemake's `mem_mib`: `mem_mb=4000` is 3815 MiB, the same bytes); "
        'at least 4 MiB; `mem` takes a size such as `"4GB"`',
        "`--awsbatch-default-mem-mb`",
    ),
    ResourceKey(("gpu", "nvidia_gpu"), "`GPU` (refused on Fargate)", "none"),
    ResourceKey(
        ("runtime",), "minutes: `timeout.attemptDurationSeconds`, at least 60 s", "no timeout"
    ),
    ResourceKey(
        (QUEUE_RESOURCE,),
        "the job queue: `default`, `priority`, or any queue name or ARN",
        "the default queue (the priority queue for `--awsbatch-priority-rules`)",
    ),
    ResourceKey(
        (IMAGE_RESOURCE,),
        "the image the rule's jobs run in, as the Batch job itself (wins over `container:`); "
        "any image with `/bin/sh`",
        "the rule's `container:`, else `--awsbatch-image`",
    ),
    ResourceKey(
        (NODES_RESOURCE,),
        "N >= 2: one multi-node parallel job of N nodes, each sized from "
        "`threads`/`mem_mb`/`gpu`; `threads` is each node's `slots` in the hostfile",
        "1 (a single job)",
    ),
    ResourceKey(
        (NODE_INPUTS_RESOURCE,),
        "with `awsbatch_nodes`: `main` (the inputs on the main node, the workflow's sources "
        "on every node) or `all` (the inputs on every node too)",
        "`main`",
    ),
)
KNOWN = frozenset(name for key in RESOURCE_KEYS for name in key.names if name.startswith(PREFIX))


def unknown(names: Iterable[str]) -> list[str]:
    """The `awsbatch_*` resource names among `names` that the plugin does not read."""
    return sorted(n for n in names if n.startswith(PREFIX) and n not in KNOWN)
