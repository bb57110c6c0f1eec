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

import contextvars
import os
import secrets
import shutil
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from snakemake.io import is_callable

from snakemake_executor_plugin_awsbatch.jobside import directories
from snakemake_executor_plugin_awsbatch.jobside.manifest import DirectoryNames
from snakemake_executor_plugin_awsbatch.staging_files import (
    directory_object,
    flagged,
    job_copy,
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
    dirs, files = _listed(client, f)
    # Built beside and swapped in whole: names of an earlier run never mix with these.
    fresh = top.with_name(f".{top.name}.awsbatch-names-{secrets.token_hex(4)}")
    try:
        for name in dirs:
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


def _listed(client: S3Client, f: Any) -> tuple[list[str], list[str]]:
    """(empty subdirectories, files) of a storage directory, relative to it."""
    s3 = S3Uri.parse(directory_object(s3_query(f)))
    return directories.listed_empty(client, str(s3)), _object_names(client, s3)


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


class UpstreamNames:
    """The names a job's Snakemake needs of the checkpoint directories its rules glob.

    Inside the job, Snakemake runs the input functions of the job's rules again, and one
    that globs a checkpoint's directory found nothing there: the directory is no input of
    the job. Empty, the aggregate of the checkpoint's shards ran with no inputs and
    succeeded (S3 storage), or the job ran the checkpoint again itself (staged). So for
    each job whose rules have input functions, the plugin evaluates them once more here,
    noting the checkpoint outputs they ask for (`checkpoints.x.get(...)`, which Snakemake
    records nowhere), and the job gets the names of those that are directories
    (manifest.DirectoryNames): listed once a run, in the working directory (staged) or in
    S3 (storage mode).
    """

    def __init__(
        self,
        client: S3Client,
        *,
        workdir: Path,
        local_prefix: str,
        job_prefix: str,
        enabled: bool,
    ) -> None:
        self.client = client
        self.workdir = workdir
        # Where Snakemake keeps local copies of storage files, here and inside jobs.
        self.local_prefix = local_prefix
        self.job_prefix = job_prefix
        self.enabled = enabled  # the workflow has checkpoints
        self._listed: dict[str, DirectoryNames] = {}
        self._lock = threading.Lock()
        if enabled:
            _record_checkpoint_outputs()

    def of_job(self, job: Any) -> list[DirectoryNames]:
        if not self.enabled:
            return []
        wanted = {str(f): f for f in checkpoint_outputs_used(job) if flagged(f, "directory")}
        return [n for f in wanted.values() if (n := self._names(f)) is not None]

    def _names(self, f: Any) -> DirectoryNames | None:
        with self._lock:
            if str(f) not in self._listed:
                found = self._list(f)
                if found is None:
                    return None
                self._listed[str(f)] = found
            return self._listed[str(f)]

    def _list(self, f: Any) -> DirectoryNames | None:
        if s3_query(f):
            path = job_copy(str(f.storage_object.local_path()), self.local_prefix, self.job_prefix)
            if path is None:
                return None  # the job keeps its copies outside its directory
            dirs, files = _listed(self.client, f)
            return DirectoryNames(path, tuple(dirs), tuple(files))
        if getattr(f, "is_storage", False) or os.path.isabs(str(f)):
            return None  # another storage provider; or outside the working directory
        return DirectoryNames(str(f), *_local_names(self.workdir / str(f)))


# The checkpoint outputs that input functions ask for while a recording is on.
_asked: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar(
    "checkpoint_outputs_asked", default=None
)


def checkpoint_outputs_used(job: Any) -> list[Any]:
    """The outputs of the checkpoints that the input functions of this (group) job's
    rules ask for: evaluated again here, with the recording on."""
    asked: list[Any] = []
    for member in members(job):
        if not any(is_callable(item) for item in member.rule.input):
            continue
        token = _asked.set(asked)
        try:
            member.rule.expand_input(member.wildcards_dict)
        except Exception:
            # What was asked before still counts; Snakemake resolved this job's inputs
            # with the same functions, and the plan check stops a job that sees otherwise.
            pass
        finally:
            _asked.reset(token)
    return asked


def _record_checkpoint_outputs() -> None:
    """Make Snakemake's Checkpoint.get note its outputs while a recording is on (only
    then: otherwise it is Snakemake's own)."""
    from snakemake.checkpoints import Checkpoint

    if getattr(Checkpoint.get, "records_checkpoint_outputs", False):
        return
    original = Checkpoint.get

    def get(self: Any, **wildcards: Any) -> Any:
        found = original(self, **wildcards)
        asked = _asked.get()
        if asked is not None:
            asked.extend(found.output)
        return found

    get.records_checkpoint_outputs = True  # type: ignore[attr-defined]
    Checkpoint.get = get


def _local_names(top: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(empty subdirectories, files) below a local directory, relative to it."""
    files = []
    for folder, _, names in os.walk(top):
        base = Path(folder).relative_to(top)
        files += [(base / name).as_posix() for name in names]
    return tuple(directories.empty_subdirectories(top)), tuple(sorted(files))
