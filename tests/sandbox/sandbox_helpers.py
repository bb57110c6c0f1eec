"""Helpers for the sandbox's tests: the command line, process checks, plain-boto3 jobs."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from snakemake_executor_plugin_awsbatch.sandbox import testing

FINAL = {"SUCCEEDED", "FAILED"}


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600):
    """Run the sandbox command line in a fresh interpreter; -> CompletedProcess (text)."""
    return subprocess.run(
        [sys.executable, "-m", "snakemake_executor_plugin_awsbatch.sandbox", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains text (to prove nothing lingers)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if text.encode() in cmdline and state != "Z":
            pids.append(int(proc.name))
    return pids


class Jobs:
    """Submit container jobs with plain boto3 and wait for them, like the plugin would."""

    def __init__(self, sandbox: testing.RunningSandbox):
        self.sandbox = sandbox
        self.session = sandbox.session()
        self.batch = self.session.client("batch")
        self.logs = self.session.client("logs")
        self.s3 = self.session.client("s3")
        self.bucket = sandbox.env["SNAKEMAKE_AWSBATCH_S3_PREFIX"].split("/")[2]

    def define(
        self,
        name: str,
        script: str,
        scratch: bool = False,
        image: str | None = None,
        mounts: dict[str, str] | None = None,
    ) -> str:
        """Register a `bash -c script` job definition -> its ARN.

        mounts: host path -> container path; scratch mounts the sandbox's scratch root
        at /scratch.
        """
        if scratch:
            mounts = {**(mounts or {}), str(self.sandbox.scratch_dir): "/scratch"}
        volumes = list((mounts or {}).items())
        properties: dict[str, Any] = {
            "image": image or self.sandbox.image,
            "command": ["bash", "-c", script],
            "resourceRequirements": [
                {"type": "VCPU", "value": "1"},
                {"type": "MEMORY", "value": "256"},
            ],
            "volumes": [
                {"name": f"v{i}", "host": {"sourcePath": host}}
                for i, (host, _) in enumerate(volumes)
            ],
            "mountPoints": [
                {"sourceVolume": f"v{i}", "containerPath": path, "readOnly": False}
                for i, (_, path) in enumerate(volumes)
            ],
        }
        return self.batch.register_job_definition(
            jobDefinitionName=name, type="container", containerProperties=properties
        )["jobDefinitionArn"]

    def submit(
        self, name: str, script: str, scratch: bool = False, timeout_seconds: int = 0
    ) -> str:
        definition = self.define(name, script, scratch=scratch)
        extra: dict[str, Any] = {}
        if timeout_seconds:
            extra["timeout"] = {"attemptDurationSeconds": timeout_seconds}
        return self.batch.submit_job(
            jobName=name,
            jobQueue=self.sandbox.env["SNAKEMAKE_AWSBATCH_DEFAULT_QUEUE"],
            jobDefinition=definition,
            **extra,
        )["jobId"]

    def describe(self, job_id: str) -> dict[str, Any]:
        return self.batch.describe_jobs(jobs=[job_id])["jobs"][0]

    def wait(self, job_id: str, statuses: set[str] = FINAL, timeout: float = 120) -> dict:
        """Poll until the job reaches one of statuses; fail the test after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.describe(job_id)
            if job["status"] in statuses:
                return job
            assert time.monotonic() < deadline, f"job stuck in {job['status']}"
            time.sleep(0.2)

    def log_lines(self, job: dict[str, Any]) -> list[str]:
        events = self.logs.get_log_events(
            logGroupName="/aws/batch/job", logStreamName=job["container"]["logStreamName"]
        )["events"]
        return [event["message"] for event in events]
