"""The Snakemake executor: submit jobs to AWS Batch, follow them, cancel them.

Snakemake calls `run_job` from its scheduler thread, `check_active_jobs` from
its status thread, and `cancel_jobs` on Ctrl-C or when the run aborts. The AWS
details live in the modules this one wires together.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.exceptions
from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor
from snakemake_interface_executor_plugins.jobs import JobExecutorInterface

from snakemake_executor_plugin_awsbatch import logs, status
from snakemake_executor_plugin_awsbatch.aws import AwsClients, connect, error_code, is_throttling
from snakemake_executor_plugin_awsbatch.config import (
    PluginConfig,
    fill_unset,
    load_config,
    parse_s3_prefix,
)
from snakemake_executor_plugin_awsbatch.errors import ConfigError
from snakemake_executor_plugin_awsbatch.jobdef import ContainerShape, JobDefinitions
from snakemake_executor_plugin_awsbatch.jobside.report import SUCCEEDED
from snakemake_executor_plugin_awsbatch.queues import QueueInspector, route
from snakemake_executor_plugin_awsbatch.resources import JobResources, fit_fargate, job_resources
from snakemake_executor_plugin_awsbatch.settings import ExecutorSettings
from snakemake_executor_plugin_awsbatch.stack import read_stack_outputs
from snakemake_executor_plugin_awsbatch.staging import Stager, StagingError
from snakemake_executor_plugin_awsbatch.staging_files import (
    job_inputs,
    job_products,
    s3_storage_directories,
)
from snakemake_executor_plugin_awsbatch.submit import job_name, submit_request, tag_value

LOG_DIR = Path(".snakemake") / "awsbatch-logs"
RUNNER = ["python", "-m", "snakemake_executor_plugin_awsbatch.jobside"]
MAX_POLL_BACKOFF = 300
# Environment variables that look like secrets never travel in a SubmitJob request:
# jobs get AWS access from their job role, not from copied keys.
_SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY|CREDENTIAL|SESSION", re.IGNORECASE)


@dataclass(frozen=True)
class JobPlan:
    """Where and how one Snakemake job runs on Batch."""

    label: str
    queue: str
    resources: JobResources
    job_definition: str


@dataclass
class JobState:
    """What the executor remembers about one submitted job (SubmittedJobInfo.aux)."""

    plan: JobPlan
    name: str
    manifest: str
    tracking: status.Tracking
    moved_to_priority: bool = False


class Executor(RemoteExecutor):
    def __post_init__(self) -> None:
        settings = self.workflow.executor_settings or ExecutorSettings()
        self.config: PluginConfig = load_config(settings)
        if not self.config.image:
            raise ConfigError(
                "No job image: set --awsbatch-image (or SNAKEMAKE_AWSBATCH_IMAGE) to an image "
                "with Snakemake and this plugin, e.g. one built from containers/Dockerfile"
            )
        self.run_id = uuid.uuid4().hex[:12]
        self.aws: AwsClients = connect(self.config.region)
        if self.config.stack:
            stack = read_stack_outputs(self.aws.cloudformation, self.config.stack)
            self.config = load_config(fill_unset(settings, stack.settings()))
        self.queues = QueueInspector(self.aws.batch, self.aws.ec2)
        self.job_definitions = JobDefinitions(
            self.aws.batch, tags={"managed-by": "snakemake-executor-plugin-awsbatch"}
        )
        self.job_environment = self._job_environment()
        self.priority_fallback = self._check_queues()
        self._check_planned_jobs()
        self.stager = self._make_stager()
        self.base_poll_seconds = (
            self.workflow.remote_execution_settings.seconds_between_status_checks
        )
        self.logger.info(
            f"AWS Batch run {self.run_id}: region {self.aws.region}, default queue "
            f"{self.config.default_queue}, priority queue {self.config.priority_queue}, "
            f"image {self.config.image}"
        )

    # -- planning -------------------------------------------------------------

    def _check_queues(self) -> bool:
        """The default queue must work; the priority queue only if something uses it."""
        self.queues.get(self.config.default_queue)
        try:
            self.queues.get(self.config.priority_queue)
        except ConfigError as e:
            if self._any_job_on(self.config.priority_queue):
                raise
            self.logger.warning(f"{e}. Jobs reclaimed on spot will not move to it.")
            return False
        return True

    def _any_job_on(self, queue: str) -> bool:
        return any(self._queue_of(job) == queue for job in self._planned_jobs())

    def _planned_jobs(self) -> list[Any]:
        return [job for job in self.workflow.dag.needrun_jobs() if not job.is_local]

    def _check_planned_jobs(self) -> None:
        """Refuse the run before any submission if some job cannot run where it is sent."""
        for job in self._planned_jobs():
            plan = self._plan(job)
            lost = s3_storage_directories(job)
            if lost:
                raise ConfigError(
                    f"Rule {plan.label}: directory() output {lost[0]} is in S3 storage, where "
                    "snakemake-storage-plugin-s3 (up to 0.3.6) reports a directory written by "
                    "a remote job as missing, after the job ran; run without "
                    "--default-storage-provider (the plugin stages it) or write a file instead"
                )

    def _queue_of(self, job: JobExecutorInterface) -> str:
        return route(
            job.rules,
            job.resources,
            self.config.default_queue,
            self.config.priority_queue,
            self.config.priority_rules,
        )

    def _plan(self, job: JobExecutorInterface, queue: str | None = None) -> JobPlan:
        label = job.name if job.is_group() else job.rule.name
        queue = queue or self._queue_of(job)
        info = self.queues.get(queue)
        wanted = job_resources(label, job.resources, job.threads, self.config.default_mem_mb)
        resources = fit_fargate(label, wanted) if info.fargate else wanted
        if info.fargate and not self.config.execution_role:
            raise ConfigError(
                f"Queue {info.name} runs on Fargate, which needs an execution role: set "
                "--awsbatch-execution-role"
            )
        self.queues.check_fit(label, queue, resources)
        shape = ContainerShape(
            image=str(job.resources.get("awsbatch_image") or self.config.image),
            job_role=self.config.job_role,
            execution_role=self.config.execution_role if info.fargate else None,
            fargate=info.fargate,
            log_group=self.config.log_group,
            region=self.aws.region,
            efs=self.config.efs,
            scratch_root=self.config.scratch_root,
        )
        return JobPlan(label, queue, resources, self.job_definitions.resolve(shape))

    def _make_stager(self) -> Stager:
        """Where sources, manifests (and in staged mode inputs and outputs) go in S3."""
        storage = self.workflow.storage_settings
        staged = not storage.default_storage_provider
        location = self.config.s3_prefix
        if (
            location is None
            and not staged
            and str(storage.default_storage_prefix).startswith("s3://")
        ):
            location = parse_s3_prefix(storage.default_storage_prefix, "--default-storage-prefix")
        if location is None:
            raise ConfigError(
                "No S3 location for the jobs' files: set --awsbatch-s3-prefix "
                "s3://BUCKET/PREFIX (or SNAKEMAKE_AWSBATCH_S3_PREFIX, or --awsbatch-stack)"
            )
        stager = Stager(location, self.run_id, Path.cwd(), staged)
        stager.check_writable()
        stager.stage_sources(self.workflow.dag.get_sources())
        mode = "staged" if staged else "storage"
        self.logger.info(f"AWS Batch run {self.run_id}: {mode} mode, files under {location.uri()}")
        return stager

    def _job_environment(self) -> dict[str, str]:
        env = dict(self.envvars())
        secret = sorted(k for k in env if _SECRET_NAME.search(k))
        if secret:
            self.logger.warning(
                "Not passing these variables to Batch jobs (they look like secrets; jobs get "
                f"AWS access from their job role): {', '.join(secret)}"
            )
        return {k: v for k, v in env.items() if k not in secret}

    def additional_general_args(self) -> str:
        # The job's Snakemake would print each rule's block and repeat its error report,
        # which the submitting Snakemake prints anyway; quiet, the job's log holds what
        # the rule's command printed, and a failure's log tail shows exactly that.
        return "--quiet progress rules host"

    # -- submission -----------------------------------------------------------

    def run_job(self, job: JobExecutorInterface) -> None:
        plan = self._plan(job)
        state = self._submit(job, plan, suffix="")
        self.report_job_submission(state)

    def _unique_part(self, job: JobExecutorInterface) -> str:
        jobid = str(job.jobid).replace("-", "")[:12] if job.is_group() else str(job.jobid)
        return f"{self.run_id[:8]}-{jobid}-a{job.attempt}"

    def _submit(self, job: JobExecutorInterface, plan: JobPlan, suffix: str) -> SubmittedJobInfo:
        name = job_name(plan.label, self._unique_part(job) + suffix)
        # The command travels in an S3 manifest: Batch caps a SubmitJob request at 30 KiB.
        manifest = self.stager.write_manifest(
            name, self.format_job_exec(job), job_inputs(job), job_products(job)
        )
        request = submit_request(
            name=name,
            queue=plan.queue,
            job_definition=plan.job_definition,
            command=[*RUNNER, manifest, "--scratch-root", self.config.scratch_root],
            environment=self.job_environment,
            resources=plan.resources,
            spot_retries=self.config.spot_retries,
            tags={
                **self.config.tags,
                "snakemake-run": self.run_id,
                "snakemake-rule": tag_value("+".join(sorted(job.rules))),
            },
        )
        try:
            job_id = self.aws.batch.submit_job(**request)["jobId"]
        except botocore.exceptions.ClientError as e:
            raise WorkflowError(f"SubmitJob for {name} on queue {plan.queue} failed: {e}") from e
        self.logger.info(
            f"Submitted rule {plan.label} (Snakemake job {job.jobid}) as Batch job {job_id} "
            f"on queue {plan.queue} [{plan.resources.describe()}]: "
            f"{self.aws.console_job_url(job_id)}"
        )
        return SubmittedJobInfo(
            job=job,
            external_jobid=job_id,
            aux={"state": JobState(plan, name, manifest, status.Tracking())},
        )

    # -- status ---------------------------------------------------------------

    async def check_active_jobs(
        self, active_jobs: list[SubmittedJobInfo]
    ) -> AsyncGenerator[SubmittedJobInfo, None]:
        try:
            details = await self._describe([j.external_jobid for j in active_jobs])
        except botocore.exceptions.BotoCoreError as e:
            self._back_off(f"AWS Batch status check failed ({e})")
            details = None
        except botocore.exceptions.ClientError as e:
            if not is_throttling(e) and error_code(e) not in {"ServerException", "InternalError"}:
                raise WorkflowError(f"AWS Batch DescribeJobs failed: {e}") from e
            self._back_off(f"AWS Batch is throttling status checks ({error_code(e)})")
            details = None
        if details is None:
            for job_info in active_jobs:
                yield job_info
            return
        self.next_seconds_between_status_checks = self.base_poll_seconds
        now = time.monotonic()
        # Concurrently: many jobs may end in one round, each with outputs to fetch back.
        followed = await asyncio.gather(
            *(self._follow(j, details.get(j.external_jobid), now) for j in active_jobs)
        )
        for job_info in followed:
            if job_info is not None:
                yield job_info
        await asyncio.to_thread(self.stager.forget_deleted_temp_outputs)

    async def _describe(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        details: dict[str, dict[str, Any]] = {}
        for chunk in status.chunks(ids):
            async with self.status_rate_limiter:
                details.update(
                    await asyncio.to_thread(status.describe_batch, self.aws.batch, chunk)
                )
        return details

    def _back_off(self, why: str) -> None:
        current = self.next_seconds_between_status_checks or self.base_poll_seconds or 1
        self.next_seconds_between_status_checks = min(MAX_POLL_BACKOFF, max(2, current * 2))
        self.logger.warning(
            f"{why}; retrying in {self.next_seconds_between_status_checks} s. Jobs keep running."
        )

    async def _follow(
        self, job_info: SubmittedJobInfo, detail: dict[str, Any] | None, now: float
    ) -> SubmittedJobInfo | None:
        """Act on one job's state; returns the job info to keep following, if any."""
        state: JobState = job_info.aux["state"]
        verdict = status.classify(detail, state.tracking, now, self.config.unschedulable_timeout)
        if verdict is status.Verdict.ACTIVE:
            return job_info
        if verdict is status.Verdict.SUCCEEDED:
            await asyncio.to_thread(self._finish, job_info)
        elif verdict is status.Verdict.SPOT_RECLAIMED and self._may_move(state):
            return await asyncio.to_thread(self._move_to_priority, job_info)
        elif verdict is status.Verdict.LOST:
            self.report_job_error(
                job_info,
                msg=f"AWS Batch no longer knows job {state.name} ({job_info.external_jobid}): "
                f"it was missing from {status.LOST_AFTER_ROUNDS} status checks in a row. ",
            )
        elif verdict is status.Verdict.UNSCHEDULABLE:
            assert detail is not None
            await asyncio.to_thread(self._terminate, job_info.external_jobid, "unschedulable")
            self.report_job_error(
                job_info,
                msg=f"AWS Batch job {state.name} ({job_info.external_jobid}) could not be "
                f"placed for {self.config.unschedulable_timeout} s on queue {state.plan.queue}: "
                f"{detail.get('statusReason')}. It was terminated. ",
            )
        else:
            assert detail is not None
            await asyncio.to_thread(self._report_failure, job_info, detail)
        return None

    def _may_move(self, state: JobState) -> bool:
        return (
            self.priority_fallback
            and not state.moved_to_priority
            and state.plan.queue != self.config.priority_queue
        )

    def _move_to_priority(self, job_info: SubmittedJobInfo) -> SubmittedJobInfo:
        """A job reclaimed on every spot attempt runs once more on the priority queue."""
        state: JobState = job_info.aux["state"]
        plan = self._plan(job_info.job, self.config.priority_queue)
        self.logger.warning(
            f"Batch job {state.name} ({job_info.external_jobid}) lost its spot instance on "
            f"every attempt; resubmitting it to the priority queue {plan.queue}."
        )
        moved = self._submit(job_info.job, plan, suffix="-p")
        moved.aux["state"].moved_to_priority = True
        return moved

    def _finish(self, job_info: SubmittedJobInfo) -> None:
        """A SUCCEEDED Batch job: bring its files back, then tell Snakemake."""
        state: JobState = job_info.aux["state"]
        report = self.stager.read_report(state.manifest)
        problem = None
        if report is None:
            problem = "its runner wrote no report"
        elif report.status != SUCCEEDED:
            problem = report.error or f"its runner reported {report.status}"
        else:
            try:
                self.stager.fetch_products(report, ("output", "log", "benchmark"))
            except StagingError as e:
                problem = str(e)
        if problem:
            self.report_job_error(
                job_info,
                msg=f"AWS Batch job {state.name} ({job_info.external_jobid}) ended but {problem}. ",
            )
        else:
            self.report_job_success(job_info)

    def _report_failure(self, job_info: SubmittedJobInfo, detail: dict[str, Any]) -> None:
        state: JobState = job_info.aux["state"]
        message = (
            f"AWS Batch job {state.name} ({job_info.external_jobid}) on queue "
            f"{state.plan.queue} failed: {status.failure_summary(detail)}."
        )
        report = self.stager.read_report(state.manifest)
        if report is not None:
            if report.error:
                message += f" The job said: {report.error}."
            try:
                # The rule's own log and benchmark files help most; bring them back.
                self.stager.fetch_products(report, ("log", "benchmark"))
            except StagingError as e:
                message += f" {e}."
        if status.was_spot_reclaimed(detail):
            message += " Its spot instance was reclaimed on every attempt."
        aux_logs: list[str] = []
        stream = status.log_stream(detail)
        if stream:
            try:
                lines = logs.fetch_log(self.aws.logs, self.config.log_group, stream)
            except botocore.exceptions.ClientError as e:
                message += f"\nIts log {self.config.log_group}/{stream} could not be read: {e}"
            else:
                path = logs.save_log(lines, LOG_DIR / f"{state.name}.log")
                aux_logs.append(str(path))
                shown = logs.tail(lines, self.config.log_tail_lines)
                message += (
                    f"\nLast {len(shown)} lines its command printed "
                    f"({self.config.log_group}/{stream}):\n"
                    + "".join(f"    {line}\n" for line in shown)
                    + f"Whole log: {path}"
                )
        else:
            message += "\nIt has no log stream (it never started)."
        self.report_job_error(job_info, msg=message + "\n", aux_logs=aux_logs)

    # -- cancellation -----------------------------------------------------------

    def cancel_jobs(self, active_jobs: list[SubmittedJobInfo]) -> None:
        self.logger.info(f"Terminating {len(active_jobs)} AWS Batch job(s) of run {self.run_id}.")
        for job_info in active_jobs:
            self._terminate(job_info.external_jobid, "cancelled")

    def shutdown(self) -> None:
        super().shutdown()
        stager = getattr(self, "stager", None)
        if stager is not None:
            stager.cleanup()
            self.logger.info(f"AWS Batch run {self.run_id}: staging {stager.traffic.describe()}.")

    def _terminate(self, job_id: str, why: str) -> None:
        reason = f"Snakemake run {self.run_id}: {why}"
        try:
            self.aws.batch.terminate_job(jobId=job_id, reason=reason)
        except botocore.exceptions.ClientError as e:
            self.logger.error(f"Could not terminate Batch job {job_id}: {e}")
