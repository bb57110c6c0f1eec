"""A checkpoint's directory() output in S3 storage, named on the submitting machine.

After a checkpoint, Snakemake runs the input functions that depend on it here, on the
submitting machine, and the usual one globs the checkpoint's directory:
`glob_wildcards(os.path.join(checkpoints.split.get().output[0], "part_{n}"))`. In S3
storage mode that path is Snakemake's local copy, which a Batch job never makes here:
the glob finds nothing and the run goes on with no shards at all, silently.

So when a checkpoint's job has succeeded, the plugin writes the directory's names
where Snakemake keeps its local copy: its subdirectories, and an empty file for each
object, all dated 1970. No data passes through this machine. A job here that reads the
directory still gets the real files: Snakemake finds its copy older than S3 and fetches
them over the names.

The names go when the run ends. Snakemake 9 stumbles over a local copy of an output
it is about to make again: it removes the copy, then calls the output write-protected
(its cache still says the copy exists). Names left behind would stop the next run
that reruns the checkpoint.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from snakemake_executor_plugin_awsbatch.jobside import directories
from snakemake_executor_plugin_awsbatch.staging_files import (
    directory_object,
    flagged,
    members,
    s3_query,
)
from snakemake_executor_plugin_awsbatch.transfer import S3Client, S3Uri


def checkpoint_directories(job: Any) -> list[Any]:
    """The directory() outputs in S3 storage of the checkpoints in this (group) job."""
    return [
        f
        for member in members(job)
        if getattr(member, "is_checkpoint", False)
        for f in member.output
        if s3_query(f) and flagged(f, "directory")
    ]


def unnamed(dag: Any) -> list[Any]:
    """The storage directories of complete checkpoints whose names are not on this
    machine: Snakemake ran the input functions that read them on an empty directory."""
    return [
        f
        for job in dag.jobs
        for f in checkpoint_directories(job)
        if not dag.needrun(job)
        if not os.path.lexists(f.storage_object.local_path())
    ]


def write_names(client: S3Client, outputs: Iterable[Any]) -> int:
    """Write the names of each storage directory; returns how many files were named."""
    return sum(_write(client, f) for f in outputs)


def _write(client: S3Client, f: Any) -> int:
    top = Path(f.storage_object.local_path())
    s3 = S3Uri.parse(directory_object(s3_query(f)))
    files = _object_names(client, s3)
    # Built beside and swapped in whole: names of an earlier run never mix with these.
    fresh = top.with_name(f".{top.name}.awsbatch-names-{secrets.token_hex(4)}")
    try:
        for name in directories.listed_empty(client, str(s3)):
            (fresh / name).mkdir(parents=True, exist_ok=True)
        for name in files:
            (fresh / name).parent.mkdir(parents=True, exist_ok=True)
            (fresh / name).touch()
        fresh.mkdir(parents=True, exist_ok=True)
        directories.date_1970(fresh)
        if top.is_dir() and not top.is_symlink():
            shutil.rmtree(top)
        elif os.path.lexists(top):
            top.unlink()
        fresh.rename(top)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    return len(files)


def _object_names(client: S3Client, s3: S3Uri) -> list[str]:
    """The objects below the directory, relative to it (as the storage plugin fetches
    them: keys ending in '/' are not files)."""
    prefix = s3.key + "/"
    names = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            name = item["Key"][len(prefix) :]
            if name and not name.endswith("/") and directories.stays_below(name):
                names.append(name)
    return names


def remove_names(dag: Any) -> int:
    """Remove the names of the DAG's checkpoint directories; a local copy that Snakemake
    fetched for a job here (it is not dated 1970 any more) is Snakemake's to clean."""
    removed = 0
    for job in dag.jobs:
        for f in checkpoint_directories(job):
            top = Path(f.storage_object.local_path())
            if _only_names(top):
                shutil.rmtree(top, ignore_errors=True)
                removed += 1
    return removed


def _only_names(top: Path) -> bool:
    if top.is_symlink() or not top.is_dir() or top.stat().st_mtime != 0:
        return False
    stamp = top / ".snakemake_timestamp"
    return not stamp.exists() or stamp.stat().st_mtime == 0
