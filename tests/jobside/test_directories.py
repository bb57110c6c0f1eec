"""A storage directory's own object (jobside/directories.py), alone and through the runner.

The object is what makes snakemake-storage-plugin-s3 see a directory a remote job wrote;
the e2e test (tests/e2e/test_storage_directories.py) shows that with Snakemake itself.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from snakemake_executor_plugin_awsbatch.jobside import directories
from snakemake_executor_plugin_awsbatch.jobside.manifest import (
    DirectoryNames,
    Manifest,
    StorageDirectory,
)
from tests.jobside.harness import Job

COPY = ".snakemake/storage/s3/bucket/run/shards é"


def tree(top: Path) -> list[str]:
    return sorted(
        p.relative_to(top).as_posix() + ("/" if p.is_dir() else "") for p in top.rglob("*")
    )


def body(s3: Any, bucket: str, key: str) -> dict[str, Any]:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def test_the_object_lists_only_the_empty_subdirectories(
    tmp_path: Path, bucket: str, s3: Any
) -> None:
    top = tmp_path / COPY
    (top / "sub #1" / "deeper").mkdir(parents=True)
    (top / "sub #1" / "deeper" / "c.txt").write_text("c")
    (top / "holds only an empty one" / "ünïcode empty").mkdir(parents=True)
    (top / "empty").mkdir()
    (top / ".snakemake_timestamp").write_text("")
    out = StorageDirectory(COPY, f"s3://{bucket}/run/shards é", output=True)
    written = directories.mark(s3, [out], tmp_path)
    assert written == [out.uri]
    assert body(s3, bucket, "run/shards é")["empty"] == [
        "empty",
        "holds only an empty one/ünïcode empty",
    ]


def test_forget_deletes_the_outputs_objects_only(tmp_path: Path, bucket: str, s3: Any) -> None:
    for key in ("run/out", "run/in"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"{}")
    directories.forget(
        s3,
        [
            StorageDirectory("out", f"s3://{bucket}/run/out", output=True),
            StorageDirectory("in", f"s3://{bucket}/run/in", output=False),
        ],
    )
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["run/in"]


def test_restore_makes_the_listed_empty_subdirectories_dated_1970(
    tmp_path: Path, bucket: str, s3: Any
) -> None:
    listing = {"format": directories.FORMAT, "version": 1, "empty": ["a/b", "c", "../escape"]}
    s3.put_object(Bucket=bucket, Key="run/shards é", Body=json.dumps(listing).encode())
    made = directories.restore(
        s3, [StorageDirectory(COPY, f"s3://{bucket}/run/shards é", output=False)], tmp_path
    )
    top = tmp_path / COPY
    assert made == 2
    assert tree(top) == ["a/", "a/b/", "c/"]
    assert not (tmp_path / ".snakemake/storage/s3/bucket/run/escape").exists()
    # Older than any object in S3: Snakemake still fetches the files into it.
    assert os.stat(top).st_mtime == 0


@pytest.mark.parametrize("content", [None, b"not json", b'{"format": "someone else"}'])
def test_restore_ignores_a_directory_without_our_object(
    tmp_path: Path, bucket: str, s3: Any, content: bytes | None
) -> None:
    if content is not None:
        s3.put_object(Bucket=bucket, Key="run/shards", Body=content)
    made = directories.restore(
        s3, [StorageDirectory("shards", f"s3://{bucket}/run/shards", output=False)], tmp_path
    )
    assert made == 0
    assert not (tmp_path / "shards").exists()


def storage_job(bucket: str, tmp: Path, command: str) -> tuple[Job, Manifest]:
    job = Job(bucket, tmp, command)
    manifest = replace(
        job.manifest(),
        directories=[
            StorageDirectory("out dir", job.uri("out dir"), output=True),
            StorageDirectory("in dir", job.uri("in dir"), output=False),
        ],
    )
    return job, manifest


def test_the_runner_writes_the_object_after_success_only(
    tmp_path: Path, bucket: str, s3: Any
) -> None:
    listing = {"format": directories.FORMAT, "version": 1, "empty": ["nested/none"]}
    s3.put_object(Bucket=bucket, Key="files/in dir", Body=json.dumps(listing).encode())
    command = """set -eu
        test -d "in dir/nested/none"
        mkdir -p "out dir/kept empty" && echo x > "out dir/x.txt"
    """
    job, manifest = storage_job(bucket, tmp_path, command)
    done = job.run(manifest)
    assert done.returncode == 0, done.stderr
    assert json.loads(job.object("out dir"))["empty"] == ["kept empty"]
    assert f"directory {job.uri('out dir')} complete" in done.stderr


def test_a_failed_rerun_leaves_no_object_behind(tmp_path: Path, bucket: str, s3: Any) -> None:
    """An earlier run's object must not make a half-written directory look complete."""
    s3.put_object(Bucket=bucket, Key="files/out dir", Body=b'{"format": "x"}')
    job, manifest = storage_job(bucket, tmp_path, 'mkdir "out dir"; exit 3')
    done = job.run(manifest)
    assert done.returncode == 3, done.stderr
    assert not job.exists("out dir")
    assert list(job.scratch_root.iterdir()) == []


def test_names_of_an_upstream_checkpoint_are_made_dated_1970_around_what_was_fetched(tmp_path):
    fetched = tmp_path / "clustering" / "2.txt"
    fetched.parent.mkdir()
    fetched.write_text("real shard\n")
    entries = [
        DirectoryNames("clustering", ("empty/sub",), ("1.txt", "2.txt", "deep/3.txt")),
        DirectoryNames("other/dir", (), ("a",)),
    ]
    assert directories.write_names(tmp_path, entries) == 3
    assert fetched.read_text() == "real shard\n" and fetched.stat().st_mtime != 0
    for name in ("clustering/1.txt", "clustering/deep/3.txt", "other/dir/a"):
        assert (tmp_path / name).stat().st_size == 0
        assert (tmp_path / name).stat().st_mtime == 0
    assert (tmp_path / "clustering/empty/sub").is_dir()
    assert (tmp_path / "other/dir").stat().st_mtime == 0  # made here whole
