"""Which files of a Snakemake job the plugin stages in and brings back.

Files in a storage provider (`storage.s3(...)`, or everything under
`--default-storage-provider`) are Snakemake's business, not the plugin's.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from typing import Any

from snakemake_executor_plugin_awsbatch.jobside.manifest import StorageDirectory
from snakemake_executor_plugin_awsbatch.staging import Product
from snakemake_executor_plugin_awsbatch.transfer import S3Uri


def _local(files: Iterable[Any]) -> list[Any]:
    return [f for f in files if not getattr(f, "is_storage", False)]


def members(job: Any) -> list[Any]:
    """The Snakemake jobs of a group job, or the job itself."""
    return list(job.jobs) if job.is_group() else [job]


def flagged(f: Any, name: str) -> bool:
    return bool(getattr(f, "flags", {}).get(name))


def job_inputs(job: Any) -> list[str]:
    """Local inputs; for a group job, only those produced outside the group."""
    return [str(f) for f in _local(job.input)]


def storage_inputs(job: Any) -> list[tuple[str, str]]:
    """(S3 URI, local copy's path) of the job's inputs in S3 storage."""
    return [(q, str(f.storage_object.local_path())) for f in job.input if (q := s3_query(f))]


def storage_outputs(job: Any) -> list[str]:
    """S3 URIs of the job's outputs in S3 storage."""
    return [q for f in job.output if (q := s3_query(f))]


def job_copy(local: str, local_prefix: str, job_prefix: str) -> str | None:
    """Where, relative to the job's working directory, the job's Snakemake keeps its copy
    of a storage file kept here at `local` (--local-storage-prefix and
    --remote-job-local-storage-prefix); None if that is not below the working directory."""
    relative = os.path.relpath(local, local_prefix)
    if relative.startswith(os.pardir) or posixpath.isabs(job_prefix):
        return None
    return posixpath.normpath(posixpath.join(job_prefix, relative))


def job_products(job: Any) -> list[Product]:
    """Outputs, logs and benchmarks the job writes and the submitting side wants back.

    For a group job: the outputs of every member job, except temp() files that another
    member consumes (Snakemake deletes those inside the job).
    """
    consumed = {str(f) for m in members(job) for f in m.input}
    products: dict[str, Product] = {}
    for member in members(job):
        for f in _local(member.output):
            if flagged(f, "temp") and str(f) in consumed:
                continue
            products[str(f)] = Product(
                str(f), flagged(f, "directory"), "output", flagged(f, "temp")
            )
        for f in _local(member.log):
            products[str(f)] = Product(str(f), False, "log")
        benchmark = getattr(member, "benchmark", None)  # one file or None
        if benchmark and not getattr(benchmark, "is_storage", False):
            products[str(benchmark)] = Product(str(benchmark), False, "benchmark")
    return list(products.values())


# snakemake-storage-plugin-s3 (0.3.6) parses a query as a URL: a key with '#' or '?' loses
# everything from that character on (a fragment, a query string), so such a file would be
# read from or written to another key than its name says.
_CUT_BY_URL_PARSING = ("#", "?")


def s3_storage_cut_keys(job: Any) -> list[str]:
    """S3 storage files of the job whose key the storage plugin would cut short."""
    return [
        query
        for f in [*job.input, *job.output]
        if (query := s3_query(f)) and any(c in query for c in _CUT_BY_URL_PARSING)
    ]


def storage_directories(job: Any, local_prefix: str, job_prefix: str) -> list[StorageDirectory]:
    """Each directory() output and directory input of the job in S3 storage: its own
    object, where the job's Snakemake keeps its copy (jobside/directories.py).

    An input counts as a directory when it is flagged so or an upstream rule makes it
    with directory(): the flag does not travel with a plain path to a consumer.
    """
    found: dict[str, tuple[Any, bool]] = {}
    for member in members(job):
        in_s3 = [f for f in member.input if s3_query(f)]
        if not in_s3:
            continue
        made_as_directory = {
            str(f)
            for producer in member.dag.dependencies.get(member, {})
            for f in producer.output
            if flagged(f, "directory")
        }
        for f in in_s3:
            if flagged(f, "directory") or str(f) in made_as_directory:
                found.setdefault(str(f), (f, False))
    for f in job.output:
        if s3_query(f) and flagged(f, "directory"):
            found[str(f)] = (f, True)
    return [
        StorageDirectory(
            path=job_copy(str(f.storage_object.local_path()), local_prefix, job_prefix) or "",
            uri=directory_object(s3_query(f)),
            output=output,
        )
        for f, output in found.values()
    ]


def directory_object(query: str) -> str:
    """The S3 URI of a storage directory's own object: the storage plugin's bucket and key
    (it normalizes the key's path: no double or trailing slashes)."""
    s3 = S3Uri.parse(query)
    return f"s3://{s3.bucket}/{posixpath.normpath(s3.key)}"


def s3_query(f: Any) -> str:
    """The S3 query of a file in S3 storage; "" for any other file."""
    if not getattr(f, "is_storage", False):
        return ""
    query = str(f.storage_object.query)
    return query if query.startswith("s3://") else ""
