"""One Snakemake run of one plugin on the sandbox, measured: wall time, the submitting
side's CPU time (os.wait4), and the AWS calls counted at the endpoint by two proxies.

The submitting Snakemake reaches AWS through the submit proxy: boto3's service-specific
variables (AWS_ENDPOINT_URL_BATCH, _S3, ...) point there. AWS_ENDPOINT_URL itself points
at the job proxy and is passed to the jobs with Snakemake's `--envvars AWS_ENDPOINT_URL`
(every plugin here forwards envvars() into the job's environment); the sandbox image's
entrypoint keeps an AWS_ENDPOINT_URL that is set. So each proxy sees one side only.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.session

from snakemake_executor_plugin_awsbatch.sandbox import testing

PROXY_MODULE = "snakemake_executor_plugin_awsbatch.sandbox.proxy"
# Every service a submitting side may call; a miss would show up at the job proxy
# (jobs call S3 only), which peers.py reports as misrouted.
SUBMIT_SERVICES = ("batch", "s3", "logs", "ec2", "ecs", "cloudformation", "sts", "iam", "ssm")
ACTIVE = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
RUN_ID = re.compile(r"AWS Batch run ([0-9a-f]{12})")


def service_endpoint_variables() -> list[str]:
    """boto3's per-service endpoint variables: AWS_ENDPOINT_URL_<service id>."""
    session = botocore.session.get_session()
    names = []
    for service in SUBMIT_SERVICES:
        service_id = session.get_service_model(service).service_id
        names.append("AWS_ENDPOINT_URL_" + str(service_id).replace(" ", "_").upper())
    return names


# -- the proxies ----------------------------------------------------------------------


class ProxyProcess:
    """The counting proxy as a process of its own (it must not share a GIL with what it
    measures), driven through its HTTP control endpoints."""

    def __init__(self, upstream: str, workdir: Path, name: str, limits: tuple[str, ...] = ()):
        self.upstream = upstream
        self.stats_file = workdir / f"proxy-{name}.json"
        self.log = workdir / f"proxy-{name}.log"
        self.limits = limits
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ProxyProcess:
        command = [*proxy_command(), "--upstream", self.upstream, "--port", "0"]
        command += ["--stats-file", str(self.stats_file)]
        for limit in self.limits:
            command += ["--limit", limit]
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
        self.url = self._wait_for_address()
        return self

    def _wait_for_address(self) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = re.search(r"proxy listening on (http://\S+)", self.log.read_text())
            if found:
                return found.group(1).rstrip("/")
            assert self.process is not None
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"the proxy did not start:\n{self.log.read_text()[-2000:]}")

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/_proxy/stats", timeout=30) as answer:
            return json.load(answer)

    def reset(self) -> None:
        request = urllib.request.Request(self.url + "/_proxy/reset", data=b"", method="POST")
        urllib.request.urlopen(request, timeout=30).close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def proxy_command() -> list[str]:
    return [sys.executable, "-m", PROXY_MODULE]


# -- a plugin and its command line ------------------------------------------------------


@dataclass
class Context:
    """Everything a command line needs, fixed for the whole benchmark."""

    sandbox: testing.RunningSandbox
    jobs: int
    job_role: str
    images: dict[str, str] = field(default_factory=dict)  # plugin key -> job image
    job_definitions: dict[int, str] = field(default_factory=dict)  # N -> aws-basic-batch's
    pythons: dict[str, str] = field(default_factory=dict)  # plugin key -> interpreter
    workflows: dict[int, Path] = field(default_factory=dict)  # N -> generated workflow
    expected: dict[int, str] = field(default_factory=dict)  # N -> result.txt of a local run

    @property
    def region(self) -> str:
        return self.sandbox.env["AWS_REGION"]

    @property
    def queue(self) -> str:
        return self.sandbox.env["SNAKEMAKE_AWSBATCH_DEFAULT_QUEUE"]


@dataclass(frozen=True)
class Plugin:
    key: str
    storage: bool  # files in S3 through Snakemake's storage plugin (else staged)
    job_name_prefix: str | None  # how its Batch jobs are recognised for clean-up
    options: Callable[[Context, int], list[str]]  # executor options for N scatter jobs


def _awsbatch(ctx: Context, n: int) -> list[str]:
    # Image and queues come from the sandbox's `env` exports, as docs/sandbox.md runs it.
    return ["--executor", "awsbatch"]


def _official(ctx: Context, n: int) -> list[str]:
    # Region, queue and job role are required settings (ExecutorSettings "required");
    # the image is Snakemake's --container-image (default: the Docker Hub snakemake image).
    return [
        *("--executor", "aws-batch", "--aws-batch-region", ctx.region),
        *("--aws-batch-job-queue", ctx.queue, "--aws-batch-job-role", ctx.job_role),
        *("--container-image", ctx.images["aws-batch"]),
    ]


def _basic(ctx: Context, n: int) -> list[str]:
    # Region, queue and a pre-registered job definition are required; the definition
    # names the image, which has the workflow in it (hence one per workflow).
    return [
        *("--executor", "aws-basic-batch", "--aws-basic-batch-region", ctx.region),
        *("--aws-basic-batch-job-queue", ctx.queue),
        *("--aws-basic-batch-job-definition", ctx.job_definitions[n]),
    ]


PLUGINS = {
    p.key: p
    for p in (
        Plugin("awsbatch-staged", False, None, _awsbatch),
        Plugin("awsbatch-storage", True, None, _awsbatch),
        Plugin("aws-batch", True, "snakejob-", _official),
        Plugin("aws-basic-batch", True, "snakejob-", _basic),
    )
}


def command(ctx: Context, plugin: Plugin, n: int, prefix: str) -> list[str]:
    if plugin.storage:
        location = ["--default-storage-provider", "s3", "--default-storage-prefix", prefix]
    else:
        location = ["--awsbatch-s3-prefix", prefix]
    return [
        ctx.pythons[plugin.key],
        *("-m", "snakemake", "--jobs", str(ctx.jobs)),
        *plugin.options(ctx, n),
        *location,
        # Last: it takes a list. Only a measuring hook (see the module's docstring).
        *("--envvars", "AWS_ENDPOINT_URL"),
    ]


def environment(sandbox: testing.RunningSandbox, submit_url: str, job_url: str) -> dict[str, str]:
    env = {**os.environ, **sandbox.env}
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        env.pop(name, None)
    env["AWS_ENDPOINT_URL"] = job_url
    for name in service_endpoint_variables():
        env[name] = submit_url
    return env


# -- running and measuring --------------------------------------------------------------


@dataclass
class Measured:
    status: str  # "ok", "failed (exit N)", "timeout"
    wall_s: float
    cpu_user_s: float
    cpu_sys_s: float
    started_epoch: float
    output_file: Path


def run_measured(
    argv: list[str], cwd: Path, env: dict[str, str], timeout: float, output: Path
) -> Measured:
    """Run argv; wall time and the CPU time of it and of every descendant it reaped.

    os.wait4 on the child's pid returns its rusage, which includes its own waited-for
    children (the submitting side's subprocesses), and nothing of the containers.
    """
    started_epoch = time.time()
    started = time.monotonic()
    with output.open("w") as sink:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT)
    status_word = None
    interrupted_at = None
    while True:
        pid, wait_status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        now = time.monotonic()
        if interrupted_at is None and now - started > timeout:
            # What Ctrl-C does: the plugin gets to cancel its jobs.
            process.send_signal(signal.SIGINT)
            interrupted_at, status_word = now, "timeout"
        elif interrupted_at is not None and now - interrupted_at > 120:
            process.kill()
        time.sleep(0.05)
    wall = time.monotonic() - started
    # Popen must not wait for a pid that is already reaped.
    process.returncode = os.waitstatus_to_exitcode(wait_status)
    if status_word is None:
        code = process.returncode
        status_word = "ok" if code == 0 else f"failed (exit {code})"
    return Measured(status_word, wall, usage.ru_utime, usage.ru_stime, started_epoch, output)


def run_id_of(output: str) -> str | None:
    found = RUN_ID.search(output)
    return found.group(1) if found else None


def terminate_leftovers(
    sandbox: testing.RunningSandbox,
    since_epoch: float,
    plugin: Plugin,
    run_id: str | None,
    wait: float = 45,
) -> int:
    """After a timeout or an interrupted run: the run's jobs still active after `wait`
    seconds are terminated; -> how many. The plugin's own Ctrl-C handling comes first
    (a stopping job stays RUNNING through its 30 s grace). Only jobs created since the
    run started and recognisable as its own are touched (the peers' job name prefix,
    this plugin's run tag): other users of a shared sandbox are left alone."""
    batch = sandbox.session().client("batch")
    deadline = time.monotonic() + wait
    while True:
        mine = _mine(batch, since_epoch, plugin, run_id)
        if not mine or time.monotonic() > deadline:
            break
        time.sleep(5)
    for job_id in mine:
        batch.terminate_job(jobId=job_id, reason="peers.py: clean-up after the run")
    return len(mine)


def _mine(batch: Any, since_epoch: float, plugin: Plugin, run_id: str | None) -> list[str]:
    recent = _recent_active(batch, since_epoch)
    if plugin.job_name_prefix is not None:
        return [s["jobId"] for s in recent if str(s["jobName"]).startswith(plugin.job_name_prefix)]
    return _tagged(batch, [s["jobId"] for s in recent], run_id)


def _recent_active(batch: Any, since_epoch: float) -> list[dict[str, Any]]:
    queues = [q["jobQueueName"] for q in batch.describe_job_queues()["jobQueues"]]
    pages = batch.get_paginator("list_jobs")
    return [
        summary
        for queue in queues
        for state in ACTIVE
        for page in pages.paginate(jobQueue=queue, jobStatus=state)
        for summary in page["jobSummaryList"]
        if summary.get("createdAt", 0) / 1000 >= since_epoch - 1
    ]


def _tagged(batch: Any, job_ids: list[str], run_id: str | None) -> list[str]:
    if run_id is None:
        return []
    found = []
    for start in range(0, len(job_ids), 100):
        for job in batch.describe_jobs(jobs=job_ids[start : start + 100])["jobs"]:
            if (job.get("tags") or {}).get("snakemake-run") == run_id:
                found.append(job["jobId"])
    return found


def shell_line(argv: list[str], env_changes: dict[str, str]) -> str:
    """The command as one could paste it (the sandbox's `env` exports assumed)."""
    assignments = [f"{k}={shlex.quote(v)}" for k, v in env_changes.items()]
    return " ".join([*assignments, shlex.join(argv)])


def totals(calls: dict[str, int], service: str) -> tuple[int, dict[str, int]]:
    ops = Counter(
        {k.partition(":")[2]: v for k, v in calls.items() if k.partition(":")[0] == service}
    )
    return sum(ops.values()), dict(sorted(ops.items(), key=lambda kv: -kv[1]))
