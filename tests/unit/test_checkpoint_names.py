"""Storage directories on the submitting side: which files are directories, whose keys
the storage plugin would cut, and a checkpoint directory's names written here.

Snakemake's files are small fakes (a query, a local path, flags); S3 is moto in-process.
The whole path with Snakemake itself: tests/e2e/test_storage_directories.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from snakemake_executor_plugin_awsbatch import checkpoint_names
from snakemake_executor_plugin_awsbatch.jobside import directories
from snakemake_executor_plugin_awsbatch.jobside.manifest import StorageDirectory
from snakemake_executor_plugin_awsbatch.staging_files import (
    job_copy,
    s3_storage_cut_keys,
    storage_directories,
)

BUCKET = "data"
LOCAL = ".snakemake/storage"


@dataclass
class StorageObject:
    query: str

    def local_path(self) -> Path:
        return Path(LOCAL, "s3", self.query.removeprefix("s3://"))


@dataclass(eq=False)
class File:
    query: str
    flags: dict[str, Any] = field(default_factory=dict)
    is_storage: bool = True

    @property
    def storage_object(self) -> StorageObject:
        return StorageObject(self.query)

    def __str__(self) -> str:
        return str(self.storage_object.local_path())


@dataclass(eq=False)
class Job:
    input: list[File] = field(default_factory=list)
    output: list[File] = field(default_factory=list)
    is_checkpoint: bool = False
    dag: Any = None

    def is_group(self) -> bool:
        return False


@dataclass
class Dag:
    jobs: list[Job]
    needs: set[int] = field(default_factory=set)  # ids of the jobs that need to run
    dependencies: dict[Job, dict[Job, set[str]]] = field(default_factory=dict)

    def needrun(self, job: Job) -> bool:
        return id(job) in self.needs


def directory(query: str) -> File:
    return File(query, {"directory": True})


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.chdir(tmp_path)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def tree(top: Path) -> list[str]:
    return sorted(
        p.relative_to(top).as_posix() + ("/" if p.is_dir() else "") for p in top.rglob("*")
    )


def test_keys_with_a_fragment_or_query_character_are_found() -> None:
    job = Job(
        input=[File("s3://data/ok.txt"), File("s3://data/a#1.txt")],
        output=[File("s3://data/what?.txt"), File("local.txt", is_storage=False)],
    )
    assert s3_storage_cut_keys(job) == ["s3://data/a#1.txt", "s3://data/what?.txt"]


def test_directories_are_outputs_so_flagged_and_inputs_an_upstream_rule_makes() -> None:
    made = directory("s3://data/run/split")
    producer = Job(output=[made])
    consumer = Job(input=[File("s3://data/run/split"), File("s3://data/run/reads.fq")])
    consumer.output = [directory("s3://data/run//out/")]
    consumer.dag = Dag([producer, consumer], dependencies={consumer: {producer: {str(made)}}})
    found = storage_directories(consumer, LOCAL, ".snakemake/storage")
    assert found == [
        StorageDirectory(".snakemake/storage/s3/data/run/split", "s3://data/run/split", False),
        # The object's key is the storage plugin's: its path normalized.
        StorageDirectory(".snakemake/storage/s3/data/run/out", "s3://data/run/out", True),
    ]


def test_a_job_copy_outside_the_job_directory_has_no_path() -> None:
    assert job_copy(f"{LOCAL}/s3/data/x", LOCAL, "/mnt/copies") is None
    assert job_copy("/elsewhere/x", LOCAL, ".snakemake/storage") is None


def test_names_are_written_dated_1970_and_replace_an_earlier_runs(s3: Any) -> None:
    for key in ("run/split/part_1", "run/split/sub/part_2", "run/split/.snakemake_timestamp"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"data that stays in S3")
    listing = {"format": directories.FORMAT, "version": 1, "empty": ["empty"]}
    s3.put_object(Bucket=BUCKET, Key="run/split", Body=json.dumps(listing).encode())
    split = directory("s3://data/run/split")
    top = split.storage_object.local_path()
    (top / "part_9").parent.mkdir(parents=True)
    (top / "part_9").write_text("an earlier run's shard")

    assert checkpoint_names.write_names(s3, [split]) == 3
    assert tree(top) == [".snakemake_timestamp", "empty/", "part_1", "sub/", "sub/part_2"]
    assert all(p.stat().st_mtime == 0 for p in [top, *top.rglob("*")])
    assert all(p.stat().st_size == 0 for p in top.rglob("*") if p.is_file())
    assert [p.name for p in top.parent.iterdir()] == ["split"]  # no temporary left


def test_only_names_are_removed_when_the_run_ends(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="run/named/part_1", Body=b"x")
    named, fetched = directory("s3://data/run/named"), directory("s3://data/run/fetched")
    checkpoint_names.write_names(s3, [named])
    copy = fetched.storage_object.local_path()
    copy.mkdir(parents=True)
    (copy / "part_1").write_text("fetched for a job on this machine")
    dag = Dag([Job(output=[named], is_checkpoint=True), Job(output=[fetched], is_checkpoint=True)])
    assert checkpoint_names.remove_names(dag) == 1
    assert not named.storage_object.local_path().exists()
    assert (copy / "part_1").exists()


def test_complete_checkpoints_without_names_here_are_found(s3: Any) -> None:
    unnamed, named, rerun = (directory(f"s3://data/run/{n}") for n in ("a", "b", "c"))
    os.makedirs(named.storage_object.local_path())
    jobs = [Job(output=[f], is_checkpoint=True) for f in (unnamed, named, rerun)]
    jobs.append(Job(output=[directory("s3://data/run/not-a-checkpoint")]))
    dag = Dag(jobs, needs={id(jobs[2])})
    assert checkpoint_names.unnamed(dag) == [unnamed]
