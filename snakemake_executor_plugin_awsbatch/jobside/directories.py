"""`directory()` outputs and inputs in Snakemake's S3 storage: the directory's own object.

snakemake-storage-plugin-s3 (0.3.6) sees a directory as the objects below `<key>/`, and
each of its StorageObjects remembers, once asked, whether that directory exists. The
submitting Snakemake asks before the job runs (the answer: no), so when the job has
written the directory, Snakemake still finds no object at `<key>` and a directory it
remembers as absent: the output is reported missing after the job ran. Nor does the
plugin store empty subdirectories (it uploads files only).

So the runner gives each such directory an object at `<key>` itself, written after the
job's Snakemake has stored the files: a HEAD of it succeeds, which is all the plugin's
`exists()` needs first. Its body lists the directory's empty subdirectories, which the
runner of a job reading the directory creates before that job's Snakemake fetches it.
The object is deleted before the command runs, so a failed rerun never leaves a
directory looking complete; it is written only after the command succeeded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from botocore.exceptions import ClientError

from ..transfer import S3Client, S3Uri
from .manifest import DirectoryNames, StorageDirectory

FORMAT = "snakemake-awsbatch-directory"
VERSION = 1
CONTENT_TYPE = "application/json"


def forget(client: S3Client, directories: list[StorageDirectory]) -> None:
    """Delete the directory objects of the outputs before the command runs."""
    for d in directories:
        if d.output:
            s3 = S3Uri.parse(d.uri)
            client.delete_object(Bucket=s3.bucket, Key=s3.key)


def mark(client: S3Client, directories: list[StorageDirectory], workdir: Path) -> list[str]:
    """Write the directory object of each output (after the command succeeded).

    The job's Snakemake keeps its local copy (--keep-storage-local-copies), from which
    the empty subdirectories are read. Returns the directories written.
    """
    written = []
    for d in directories:
        if not d.output:
            continue
        body = json.dumps(
            {"format": FORMAT, "version": VERSION, "empty": _empty(workdir, d.path)},
            ensure_ascii=False,
        ).encode()
        s3 = S3Uri.parse(d.uri)
        client.put_object(Bucket=s3.bucket, Key=s3.key, Body=body, ContentType=CONTENT_TYPE)
        written.append(d.uri)
    return written


def restore(client: S3Client, directories: list[StorageDirectory], workdir: Path) -> int:
    """Create the empty subdirectories of each input directory where the job's Snakemake
    will fetch it; returns how many were created.

    The directory is left dated 1970, so Snakemake finds its copy older than S3 and still
    fetches the files into it (into the same tree, keeping what was made here).
    """
    made = 0
    for d in directories:
        if d.output:
            continue
        empty = listed_empty(client, d.uri) if d.path else []
        if not empty:
            continue
        top = workdir / d.path
        for name in empty:
            (top / name).mkdir(parents=True, exist_ok=True)
            made += 1
        date_1970(top)
    return made


def write_names(workdir: Path, entries: list[DirectoryNames]) -> int:
    """Make the names of upstream checkpoints' directories (manifest.DirectoryNames) where
    nothing lies yet; returns how many files were named.

    What the job fetched there (a shard that is also an input) stays as it is. What is
    made here is dated 1970, so that Snakemake takes it for a stale copy wherever it
    compares: the whole tree when the directory was not there at all."""
    named = 0
    for entry in entries:
        top = workdir / entry.path
        fresh = not os.path.lexists(top)
        made = [top / name for name in entry.dirs if not os.path.lexists(top / name)]
        for path in made:
            path.mkdir(parents=True, exist_ok=True)
        for name in entry.files:
            path = top / name
            if not os.path.lexists(path):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
                made.append(path)
                named += 1
        top.mkdir(parents=True, exist_ok=True)
        if fresh:
            date_1970(top)
        for path in made:
            os.utime(path, (0, 0))
    return named


def date_1970(top: Path) -> None:
    """Date a tree of names made here 1970: older than anything in S3, so Snakemake takes
    it for a stale copy and fetches the real files into it. Deepest first: dating an entry
    does not touch its parent's time, but making it did."""
    for folder, _, names in sorted(os.walk(top), key=lambda w: -w[0].count(os.sep)):
        for name in names:
            os.utime(os.path.join(folder, name), (0, 0))
        os.utime(folder, (0, 0))


def _empty(workdir: Path, path: str) -> list[str]:
    return empty_subdirectories(workdir / path) if path else []


def empty_subdirectories(top: Path) -> list[str]:
    """Relative paths of the directories below `top` that hold nothing (sorted)."""
    if not top.is_dir():
        return []
    empty = []
    for folder, subdirs, files in os.walk(top):
        if not subdirs and not files and Path(folder) != top:
            empty.append(Path(folder).relative_to(top).as_posix())
    return sorted(empty)


def listed_empty(client: S3Client, uri: str) -> list[str]:
    """The empty subdirectories a directory object lists; none for a directory without
    one (written by something other than this plugin) or with a foreign body."""
    s3 = S3Uri.parse(uri)
    try:
        body = client.get_object(Bucket=s3.bucket, Key=s3.key)["Body"].read()
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
            return []
        raise
    try:
        data = json.loads(body)
    except ValueError:
        return []
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return []
    return [n for n in data.get("empty", []) if stays_below(n)]


def stays_below(name: object) -> bool:
    """A name read from S3 stays below the directory it is made in."""
    if not isinstance(name, str) or not name or name.startswith("/") or "\0" in name:
        return False
    return ".." not in Path(name).parts
