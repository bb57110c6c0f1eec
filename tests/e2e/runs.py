"""Helpers for the end-to-end tests: run Snakemake on the sandbox, look at what Batch did.

Snakemake runs as a subprocess (`python -m snakemake` from this venv) in a temporary
directory holding the test's Snakefile, with the sandbox's variables in its environment
and its files under an S3 prefix of its own, so tests never see each other's files.
Two modes, as for users: staged (the default: the plugin stages files, outputs come back
into the working directory) and storage (Snakemake's S3 storage holds every file).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from snakemake_executor_plugin_awsbatch.sandbox import testing

T = TypeVar("T")

ACTIVE_STATUSES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
ALL_STATUSES = (*ACTIVE_STATUSES, "SUCCEEDED", "FAILED")
# The executor logs "AWS Batch run <id>: region ..." once per run; its jobs carry the id
# in the `snakemake-run` tag and in their termination reasons.
RUN_ID = re.compile(r"AWS Batch run ([0-9a-f]{12})")
# The documented name prefix of the job definitions the plugin registers.
DEFINITION_PREFIX = "snakemake-awsbatch-"
# The status reason AWS gives a job whose spot instance was reclaimed.
RECLAIM_REASON = "Host EC2 (instance i-0123456789abcdef0) terminated."


def poll(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 1) -> T:
    """probe() until it returns something truthy; fail the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass
class Workflow:
    """A Snakefile in its own directory with its own S3 prefix on the sandbox."""

    workdir: Path
    prefix: str  # s3://bucket/key-prefix: --awsbatch-s3-prefix or --default-storage-prefix
    sandbox: testing.RunningSandbox
    storage: bool = False  # Snakemake's S3 storage moves the files, not the plugin

    @classmethod
    def create(
        cls,
        sandbox: testing.RunningSandbox,
        workdir: Path,
        snakefile: str,
        files: dict[str, str] | None = None,
        *,
        storage: bool = False,
    ) -> Workflow:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "Snakefile").write_text(snakefile)
        for name, text in (files or {}).items():
            (workdir / name).parent.mkdir(parents=True, exist_ok=True)
            (workdir / name).write_text(text)
        return cls.at(sandbox, workdir, storage=storage)

    @classmethod
    def at(
        cls, sandbox: testing.RunningSandbox, workdir: Path, *, storage: bool = False
    ) -> Workflow:
        """The workflow already in workdir, with a fresh S3 prefix."""
        base = sandbox.env["SNAKEMAKE_AWSBATCH_S3_PREFIX"].rstrip("/")
        prefix = f"{base}/e2e-{workdir.name}-{uuid.uuid4().hex[:8]}"
        return cls(workdir, prefix, sandbox, storage)

    def location_args(self) -> list[str]:
        if not self.prefix:  # left to the environment
            return []
        if self.storage:
            return ["--default-storage-provider", "s3", "--default-storage-prefix", self.prefix]
        return ["--awsbatch-s3-prefix", self.prefix]

    def command(self, *args: str, jobs: int = 4) -> list[str]:
        # args (targets among them) come first: an option taking a list (--config,
        # --default-resources) would swallow targets that follow it.
        return [
            sys.executable,
            "-m",
            "snakemake",
            *args,
            "--executor",
            "awsbatch",
            "--jobs",
            str(jobs),
            *self.location_args(),
            "--seconds-between-status-checks",
            "1",
            # The machine running the tests is small; moto does not enforce this anyway.
            "--default-resources",
            "mem_mb=256",
        ]

    def environment(self, changes: dict[str, str] | None = None) -> dict[str, str]:
        env = {**os.environ, **self.sandbox.env, **(changes or {})}
        # A real profile or session token would mix real AWS into the sandbox's config.
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            env.pop(name, None)
        return env

    def run(
        self,
        *args: str,
        jobs: int = 4,
        timeout: float = 300,
        env: dict[str, str] | None = None,
    ) -> Result:
        started = time.monotonic()
        done = subprocess.run(
            self.command(*args, jobs=jobs),
            cwd=self.workdir,
            env=self.environment(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        took = time.monotonic() - started
        print(f"snakemake in {self.workdir.name}: exit {done.returncode} after {took:.1f} s")
        return Result(done.returncode, done.stdout + done.stderr)

    def start(self, *args: str, jobs: int = 4) -> Background:
        """Snakemake in the background, its output in a file (a pipe could fill and block it)."""
        output = self.workdir / "snakemake.out"
        with output.open("w") as sink:
            process = subprocess.Popen(
                self.command(*args, jobs=jobs),
                cwd=self.workdir,
                env=self.environment(),
                stdout=sink,
                stderr=subprocess.STDOUT,
                preexec_fn=_default_sigint,
            )
        return Background(process, output)

    def s3_key(self, path: str) -> tuple[str, str]:
        bucket, _, key_prefix = self.prefix.removeprefix("s3://").partition("/")
        return bucket, f"{key_prefix}/{path}"

    def read_output(self, path: str) -> str:
        """An output file of the run where the user finds it: in the working directory
        (staged) or in S3 (storage)."""
        if not self.storage:
            return (self.workdir / path).read_text()
        bucket, key = self.s3_key(path)
        s3 = self.sandbox.session().client("s3")
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()

    def s3_objects(self) -> dict[str, dict[str, Any]]:
        """Every object under the workflow's prefix: path below it -> size, ETag, time."""
        bucket, key_prefix = self.s3_key("")
        s3 = self.sandbox.session().client("s3")
        return {
            item["Key"][len(key_prefix) :]: item
            for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=key_prefix
            )
            for item in page.get("Contents", [])
        }

    def download(self, paths: Iterable[str], dest: Path) -> Path:
        s3 = self.sandbox.session().client("s3")
        for path in paths:
            (dest / path).parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(*self.s3_key(path), str(dest / path))
        return dest

    def snakemake_logs(self) -> list[Path]:
        return sorted((self.workdir / ".snakemake" / "log").glob("*.snakemake.log"))

    def saved_job_logs(self) -> list[Path]:
        return sorted((self.workdir / ".snakemake" / "awsbatch-logs").glob("*.log"))


def _default_sigint() -> None:
    """In the child: Ctrl-C as in a terminal. A shell starts background commands with
    SIGINT ignored (`make test &`, `nohup`), Python then keeps it ignored, and interrupt()
    would do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class Result:
    returncode: int
    output: str  # stdout and stderr

    @property
    def run_id(self) -> str:
        return run_id_in(self.output)


def run_id_in(output: str) -> str:
    found = RUN_ID.search(output)
    assert found, f"no 'AWS Batch run <id>' line in Snakemake's output:\n{output[-3000:]}"
    return found.group(1)


@dataclass
class Background:
    process: subprocess.Popen
    output_file: Path

    def output(self) -> str:
        return self.output_file.read_text(errors="replace")

    def run_id(self, timeout: float = 60) -> str:
        found = poll(lambda: RUN_ID.search(self.output()), timeout, "the run id in the output")
        return found.group(1)

    def interrupt(self) -> None:
        """What Ctrl-C in a terminal does to Snakemake."""
        self.process.send_signal(signal.SIGINT)

    def stop(self) -> None:
        """Clean-up after a failed test: never leave Snakemake running."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class Batch:
    """The sandbox's Batch API, seen the way a user would check what a run did."""

    def __init__(self, sandbox: testing.RunningSandbox):
        self.client = sandbox.session().client("batch")

    def queue_names(self) -> list[str]:
        queues = self.client.describe_job_queues()["jobQueues"]
        return [q["jobQueueName"] for q in queues]

    def jobs_of_run(self, run_id: str) -> list[dict[str, Any]]:
        """Full descriptions of every job tagged with the run id, in any queue and status:
        the children of an array job in place of the array (each ran one Snakemake job)."""
        pages = self.client.get_paginator("list_jobs")
        ids = {
            summary["jobId"]
            for queue in self.queue_names()
            for job_status in ALL_STATUSES
            for page in pages.paginate(jobQueue=queue, jobStatus=job_status)
            for summary in page["jobSummaryList"]
        }
        jobs = [
            j
            for j in self.describe(sorted(ids))
            if (j.get("tags") or {}).get("snakemake-run") == run_id
        ]
        ran: list[dict[str, Any]] = []
        for job in jobs:
            size = (job.get("arrayProperties") or {}).get("size")
            if size:
                ran += self.describe([f"{job['jobId']}:{i}" for i in range(size)])
            else:
                ran.append(job)
        return sorted(ran, key=lambda j: (j["createdAt"], j["jobId"]))

    def arrays_of_run(self, run_id: str) -> list[dict[str, Any]]:
        """The array jobs (parents) of the run."""
        parents = {runs_parent(j["jobId"]) for j in self.jobs_of_run(run_id)} - {None}
        return self.describe(sorted(p for p in parents if p))

    def describe(self, ids: list[str]) -> list[dict[str, Any]]:
        described: list[dict[str, Any]] = []
        for start in range(0, len(ids), 100):
            described += self.client.describe_jobs(jobs=ids[start : start + 100])["jobs"]
        return described

    def job(self, job_id: str) -> dict[str, Any]:
        return self.client.describe_jobs(jobs=[job_id])["jobs"][0]

    def active_definitions(self) -> set[str]:
        """`name:revision` of every ACTIVE job definition the plugin registered."""
        pages = self.client.get_paginator("describe_job_definitions")
        return {
            f"{d['jobDefinitionName']}:{d['revision']}"
            for page in pages.paginate(status="ACTIVE")
            for d in page["jobDefinitions"]
            if d["jobDefinitionName"].startswith(DEFINITION_PREFIX)
        }


def reclaim(sandbox: testing.RunningSandbox, batch: Batch, job_id: str) -> None:
    """A spot reclaim of a running job, as Batch reports one, once its container runs.
    The sandbox's moto makes no retry attempts: the job was reclaimed on every attempt."""
    poll(lambda: containers_of(sandbox, [job_id]), 30, "the job's container")
    batch.client.terminate_job(jobId=job_id, reason=RECLAIM_REASON)


def containers_of(sandbox: testing.RunningSandbox, job_ids: Iterable[str]) -> dict[str, str]:
    """job id -> name of its container (moto names them `<job name>-<job id>-<n>`)."""
    names = sandbox.job_containers()
    # An array child's id `<array>:<index>` appears in names with "-" for ":".
    return {i: name for i in job_ids for name in names if i.replace(":", "-") in name}


def runs_parent(job_id: str) -> str | None:
    """The array's id for an array child's id `<array id>:<index>`, else None."""
    parent, sep, index = job_id.rpartition(":")
    return parent if sep and index.isdigit() else None


def queue_of(job: dict[str, Any]) -> str:
    """The queue's name from the job's queue ARN."""
    return job["jobQueue"].rsplit("/", 1)[-1]


def definition_of(job: dict[str, Any]) -> str:
    """`name:revision` from the job's job-definition ARN."""
    return job["jobDefinition"].rsplit("/", 1)[-1]


def rule_of(job: dict[str, Any]) -> str:
    return job["tags"]["snakemake-rule"]


def scratch_entries(sandbox: testing.RunningSandbox, job_ids: Iterable[str]) -> list[str]:
    """What these Batch jobs have in the scratch root: the job-side runner names each job's
    scratch directory, and its lock file, after the job id (docs/staging.md)."""
    ids = tuple(i.replace(":", "-") for i in job_ids)  # as for container names
    return sorted(p.name for p in sandbox.scratch_dir.iterdir() if p.name.startswith(ids))
