"""Which files of a Snakemake job the plugin stages in and brings back.

Files in a storage provider (`storage.s3(...)`, or everything under
`--default-storage-provider`) are Snakemake's business, not the plugin's.
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Iterable
from typing import Any

from snakemake_executor_plugin_awsbatch.staging import Product


def _local(files: Iterable[Any]) -> list[Any]:
    return [f for f in files if not getattr(f, "is_storage", False)]


def _flag(f: Any, name: str) -> bool:
    return bool(getattr(f, "flags", {}).get(name))


def job_inputs(job: Any) -> list[str]:
    """Local inputs; for a group job, only those produced outside the group."""
    return [str(f) for f in _local(job.input)]


def storage_inputs(job: Any) -> list[tuple[str, str]]:
    """(S3 URI, local copy's path) of the job's inputs in S3 storage."""
    found = []
    for f in job.input:
        if getattr(f, "is_storage", False):
            query = str(f.storage_object.query)
            if query.startswith("s3://"):
                found.append((query, str(f.storage_object.local_path())))
    return found


def storage_outputs(job: Any) -> list[str]:
    """S3 URIs of the job's outputs in S3 storage."""
    return [
        str(f.storage_object.query)
        for f in job.output
        if getattr(f, "is_storage", False) and str(f.storage_object.query).startswith("s3://")
    ]


def job_products(job: Any) -> list[Product]:
    """Outputs, logs and benchmarks the job writes and the submitting side wants back.

    For a group job: the outputs of every member job, except temp() files that another
    member consumes (Snakemake deletes those inside the job).
    """
    members = list(job.jobs) if job.is_group() else [job]
    consumed = {str(f) for m in members for f in m.input}
    products: dict[str, Product] = {}
    for member in members:
        for f in _local(member.output):
            if _flag(f, "temp") and str(f) in consumed:
                continue
            products[str(f)] = Product(str(f), _flag(f, "directory"), "output", _flag(f, "temp"))
        for f in _local(member.log):
            products[str(f)] = Product(str(f), False, "log")
        benchmark = getattr(member, "benchmark", None)  # one file or None
        if benchmark and not getattr(benchmark, "is_storage", False):
            products[str(benchmark)] = Product(str(benchmark), False, "benchmark")
    return list(products.values())


# snakemake-storage-plugin-s3 up to this version remembers that a directory() output did
# not exist before the job (StorageObject.is_dir caches the answer), so when a remote job
# has written it, Snakemake reports it missing and the run fails after the job ran.
S3_STORAGE_LOSES_DIRECTORIES_UP_TO = (0, 3, 6)


def s3_storage_directories(job: Any) -> list[str]:
    """The job's directory() outputs that Snakemake's S3 storage plugin would lose track of."""
    if not _s3_storage_loses_directories():
        return []
    return [
        str(f.storage_object.query)
        for f in job.output
        if getattr(f, "is_storage", False)
        and _flag(f, "directory")
        and str(f.storage_object.query).startswith("s3://")
    ]


@functools.cache  # asked once per planned job; the installed version does not change
def _s3_storage_loses_directories() -> bool:
    try:
        version = importlib.metadata.version("snakemake-storage-plugin-s3")
    except importlib.metadata.PackageNotFoundError:
        return False
    numbers = tuple(int(part) for part in version.split(".")[:3] if part.isdigit())
    return numbers <= S3_STORAGE_LOSES_DIRECTORIES_UP_TO
