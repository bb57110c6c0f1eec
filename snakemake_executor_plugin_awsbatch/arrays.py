"""Array jobs: Snakemake jobs that are ready together and alike go to Batch as one job.

One SubmitJob with `arrayProperties.size = N` starts N children, which share the command
and every override. Jobs can share an array when everything the request says is the same
for them: rule, queue, job definition (image), resources and timeout. What differs (the
Snakemake job to run) is in each child's manifest; the array's manifests are one object,
a pack, in which the child's runner reads its own record by its AWS_BATCH_JOB_ARRAY_INDEX
(jobside/manifest.py). Children are ids `<array id>:<index>`
that DescribeJobs, TerminateJob and the CloudWatch logs know individually, so status,
failures, logs and spot moves stay per Snakemake job.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

MIN_SIZE = 2  # Batch refuses an array of one
MAX_SIZE = 10_000


def group(items: Iterable[T], key: Callable[[T], Hashable], max_size: int) -> list[list[T]]:
    """Items in groups of equal key, each at most max_size long, in the order they came.

    max_size 1 turns arrays off: every item alone."""
    groups: dict[Hashable, list[list[T]]] = {}
    for item in items:
        runs = groups.setdefault(key(item), [[]])
        if len(runs[-1]) >= max_size:
            runs.append([])
        runs[-1].append(item)
    return [run for runs in groups.values() for run in runs]


def child_id(array_id: str, index: int) -> str:
    return f"{array_id}:{index}"


def parent_of(job_id: str) -> str | None:
    """The array's id for a child's id, None for any other job."""
    parent, sep, index = job_id.rpartition(":")
    return parent if sep and index.isdigit() else None


def terminations(job_ids: Sequence[str], sizes: dict[str, int]) -> list[str]:
    """What to terminate to end these jobs: a whole array in one call when all its
    children are among them (`sizes`: array id -> number of children), else each job."""
    children: dict[str, list[str]] = {}
    for job_id in job_ids:
        parent = parent_of(job_id)
        children.setdefault(parent or job_id, []).append(job_id)
    targets: list[str] = []
    for parent, ids in children.items():
        whole = parent in sizes and len(set(ids)) == sizes[parent]
        targets.extend([parent] if whole else ids)
    return targets


@dataclass
class Pack:
    """An array's pack of manifests in S3, shared by its children: it may go only when
    none of them can start again (all ended). `pending` None: not before the run ends
    (children adopted from a dead run, which this run did not count)."""

    uri: str
    pending: int | None

    def release(self) -> bool:
        """One child has ended; -> whether that was the last, so the pack can go.

        Called from the status thread only."""
        if self.pending is None:
            return False
        self.pending -= 1
        return self.pending == 0
