"""The Snakemake executor: submit jobs to AWS Batch, follow them, cancel them.

Snakemake calls `run_jobs` from its scheduler thread, `check_active_jobs` from its
status thread (which may start before `__post_init__` has finished), and `cancel_jobs`
on Ctrl-C or when the run aborts. This module only wires the pieces together: planning
(plan.py), submission (dispatch.py, arrays.py, submission.py), jobs a dead run left
(adoption.py), status rounds (follow.py), staging (staging.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import uuid
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

import botocore.exceptions
from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor
from snakemake_interface_executor_plugins.jobs import JobExecutorInterface

from snakemake_executor_plugin_awsbatch import (
    arrays,
    checkpoint_names,
    images,
    job_exec,
    run_report,
    runtime,
    status,
)
from snakemake_executor_plugin_awsbatch.adoption import Orphans, identity
from snakemake_executor_plugin_awsbatch.aws import AwsClients, connect, error_code, is_throttling
from snakemake_executor_plugin_awsbatch.companions import Companions, StorageCompanions
from snakemake_executor_plugin_awsbatch.config import (
    PluginConfig,
    fill_unset,
    load_config,
    parse_s3_prefix,
)
from snakemake_executor_plugin_awsbatch.dispatch import Dispatcher, JobState
from snakemake_executor_plugin_awsbatch.errors import ConfigError
from snakemake_executor_plugin_awsbatch.follow import Follower, Outcomes
from snakemake_executor_plugin_awsbatch.jobdef import JobDefinitions
from snakemake_executor_plugin_awsbatch.jobside.planned import SCHEDULER
from snakemake_executor_plugin_awsbatch.plan import JobPlan, Planner
from snakemake_executor_plugin_awsbatch.queues import QueueInspector
from snakemake_executor_plugin_awsbatch.settings import ExecutorSettings
from snakemake_executor_plugin_awsbatch.stack import read_stack_outputs
from snakemake_executor_plugin_awsbatch.staging import Stager
from snakemake_executor_plugin_awsbatch.staging_files import s3_storage_cut_keys
from snakemake_executor_plugin_awsbatch.submission import RateLimiter, SubmitError, Submitter
from snakemake_executor_plugin_awsbatch.transfer import make_s3_client

MAX_POLL_BACKOFF = 300
# Status rounds: each lists the run's reports in S3 (one request), so a finished job is
# noticed within a second; Batch itself is asked every --seconds-between-status-checks.
ROUND_SECONDS = 1.0
AWS_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)
# Environment variables that look like secrets never travel in a SubmitJob request:
# jobs get AWS access from their job role, not from copied keys.
_SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY|CREDENTIAL|SESSION", re.IGNORECASE)


class Executor(RemoteExecutor):
    # Class-level: Snakemake's status thread may call check_active_jobs before (or while)
    # __post_init__ runs, e.g. while throttled calls are retried at start-up.
    _ready = False
    _reported = False

    def __post_init__(self) -> None:
        settings = self.workflow.executor_settings or ExecutorSettings()
        self.config: PluginConfig = load_config(settings)
        self.run_id = uuid.uuid4().hex[:12]
        self.aws: AwsClients = connect(self.config.region)
        if self.config.stack:
            stack = read_stack_outputs(self.aws.cloudformation, self.config.stack)
            self.config = load_config(fill_unset(settings, stack.settings()))
        self.queues = QueueInspector(self.aws.batch, self.aws.ec2)
        self.planner = Planner(
            self.config,
            self.aws.region,
            self.queues,
            JobDefinitions(
                self.aws.batch, tags={"managed-by": "snakemake-executor-plugin-awsbatch"}
            ),
            runtime_key=runtime.key(),
        )
        self.priority_fallback = self._check_queues()
        self._warned_images: set[str] = set()
        planned = self._check_planned_jobs()
        self._check_checkpoint_names()
        self.stager = self._make_stager()
        self.submitter = Submitter(
            self.aws.submit, RateLimiter(self.config.submit_rate), warn=self.logger.warning
        )
        self.orphans = self._take_over(planned)
        self.ledger = run_report.Ledger()
        # Index files beside inputs travel with them (local ones, and in S3 storage).
        self.companions = Companions(
            str(self.stager.workdir),
            enabled=not self.config.no_index_files,
            log=self.logger.info,
        )
        storage = self.workflow.storage_settings
        self.storage_companions = StorageCompanions(
            self.stager.client,
            enabled=not self.config.no_index_files,
            local_prefix=str(storage.local_storage_prefix),
            job_prefix=str(storage.remote_job_local_storage_prefix),
            log=self.logger.info,
            warn=self.logger.warning,
        )
        self.dispatcher = Dispatcher(
            run_id=self.run_id,
            planner=self.planner,
            stager=self.stager,
            companions=self.companions,
            storage_companions=self.storage_companions,
            upstream_names=checkpoint_names.UpstreamNames(
                self.stager.client,
                workdir=self.stager.workdir,
                local_prefix=self.storage_companions.local_prefix,
                job_prefix=self.storage_companions.job_prefix,
                enabled=any(rule.is_checkpoint for rule in self.workflow.rules),
            ),
            submitter=self.submitter,
            orphans=self.orphans,
            format_job_exec=self._job_exec,
            environment=self._job_environment(),
            tags=self.config.tags,
            spot_retries=self.config.spot_retries,
            scratch_root=self.config.scratch_root,
            max_array_size=1 if self.config.no_arrays else arrays.MAX_SIZE,
            node_join_timeout=self.config.node_join_timeout,
            terminate=self._terminate,
            log=self.logger.info,
            console_url=self.aws.console_job_url,
        )
        describe_every = self.workflow.remote_execution_settings.seconds_between_status_checks
        self.round_seconds = min(ROUND_SECONDS, describe_every)
        self.follower = Follower(
            aws=self.aws,
            stager=self.stager,
            companions=self.companions,
            config=self.config,
            outcomes=Outcomes(
                success=self._succeeded,
                error=self._failed,
                move=self._move_to_priority,
                terminate=self._terminate,
            ),
            describe_every=describe_every,
            warn=self.logger.warning,
        )
        self.next_seconds_between_status_checks = self.round_seconds
        self._ready = True
        self.logger.info(
            f"AWS Batch run {self.run_id}: region {self.aws.region}, default queue "
            f"{self.config.default_queue}, priority queue {self.config.priority_queue}, "
            f"default image {self.config.image or '(none)'}"
        )

    # -- planning -------------------------------------------------------------------

    def _check_queues(self) -> bool:
        """The default queue must work; the priority queue only if something uses it."""
        self.queues.get(self.config.default_queue)
        try:
            self.queues.get(self.config.priority_queue)
        except ConfigError as e:
            if any(
                self.planner.queue_of(job) == self.config.priority_queue
                for job in self._planned_jobs()
            ):
                raise
            self.logger.warning(f"{e}. Jobs reclaimed on spot will not move to it.")
            return False
        return True

    def _planned_jobs(self) -> list[Any]:
        return [job for job in self.workflow.dag.needrun_jobs() if not job.is_local]

    def _check_planned_jobs(self) -> list[Any]:
        """Refuse the run before any submission if some job cannot run where it is sent."""
        planned = self._planned_jobs()
        tool_images: dict[str, set[str]] = {}
        for job in planned:
            plan = self.planner.plan(job)
            if plan.runtime:
                tool_images.setdefault(plan.image, set()).add(plan.label)
                self._check_priority_runtime(plan)
            cut = s3_storage_cut_keys(job)
            if cut:
                raise ConfigError(
                    f"Rule {plan.label}: {cut[0]} is in S3 storage, where "
                    "snakemake-storage-plugin-s3 reads '#' or '?' in a key as the start of a "
                    "URL fragment or query and would use a shorter key; rename it without them"
                )
        if tool_images:
            listed = "; ".join(f"{i} ({', '.join(sorted(r))})" for i, r in tool_images.items())
            self.logger.info(
                f"AWS Batch run {self.run_id}: {len(tool_images)} tool image(s) run as the "
                f"Batch job, with the job runtime {self.planner.runtime_key} from the "
                f"instances' {self.config.runtime_root}: {listed}"
            )
        return planned

    def _check_checkpoint_names(self) -> None:
        """A complete checkpoint's storage directory without its names here was globbed
        empty when Snakemake built the DAG (checkpoint_names.py): write them, and ask for
        the run again rather than run a DAG without the checkpoint's shards."""
        dag = self.workflow.dag
        if not any(dag.needrun_jobs()):  # also local jobs: they may read the directory
            return
        unnamed = checkpoint_names.unnamed(dag)
        if not unnamed:
            return
        checkpoint_names.write_names(make_s3_client(), unnamed)
        raise ConfigError(
            f"{unnamed[0].storage_object.query} (a checkpoint's directory in S3 storage) had "
            "no local names on this machine when Snakemake evaluated the input functions "
            "that depend on it, so they saw it empty; its names are written now (no data "
            "was downloaded): run the same command again"
        )

    def _check_priority_runtime(self, plan: JobPlan) -> None:
        """A tool image's job reclaimed on spot moves to the priority queue only if that
        queue's instances have the runtime too; say so now rather than mid-run."""
        if not self.priority_fallback or plan.queue == self.config.priority_queue:
            return
        try:
            self.planner.plan_runtime(plan, self.config.priority_queue)
        except ConfigError as e:
            if plan.image not in self._warned_images:
                self._warned_images.add(plan.image)
                self.logger.warning(f"{e}. Such jobs will not move there after spot reclaims.")

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
        stager = Stager(location, self.run_id, Path.cwd(), staged, self.config.input_cache)
        stager.check_writable()
        stager.stage_sources(self.workflow.dag.get_sources())
        mode = "staged" if staged else "storage"
        self.logger.info(f"AWS Batch run {self.run_id}: {mode} mode, files under {location.uri()}")
        return stager

    def _take_over(self, planned: list[Any]) -> Orphans:
        """Find what a dead run in this directory left running; end what is not needed."""
        orphans = Orphans.find(self.stager, self.aws.batch, self.submitter.find)
        if not orphans.runs:
            return orphans
        unneeded = orphans.unneeded({identity(job) for job in planned})
        for orphan in unneeded:
            self._terminate(orphan.job_id, f"left by run {orphan.run_id}, not needed any more")
        self.logger.info(
            f"AWS Batch run {self.run_id}: the dead run(s) {', '.join(orphans.runs)} in this "
            f"directory left {len(orphans)} job(s) this run may follow instead of submitting "
            f"them again; {len(unneeded)} job(s) it does not need were terminated."
        )
        return orphans

    def _job_environment(self) -> dict[str, str]:
        env = dict(self.envvars())
        secret = sorted(k for k in env if _SECRET_NAME.search(k))
        if secret:
            self.logger.warning(
                "Not passing these variables to Batch jobs (they look like secrets; jobs get "
                f"AWS access from their job role): {', '.join(secret)}"
            )
        return {k: v for k, v in env.items() if k not in secret}

    def _job_exec(self, job: Any) -> str:
        # The job runs in the rule's own image already: its Snakemake must not start
        # apptainer for the rule's container: (images.py); and it runs in its scratch
        # directory, not in this machine's (job_exec.py).
        command = job_exec.without_directory(
            self.format_job_exec(job), self.workflow.overwrite_workdir
        )
        return images.without_container_methods(command)

    def get_snakefile(self) -> str:
        return job_exec.relative_snakefile(self.snakefile, self.stager.workdir)

    def additional_general_args(self) -> str:
        # The job's Snakemake would print each rule's block and repeat its error report,
        # which the submitting Snakemake prints anyway; quiet, the job's log holds what
        # the rule's command printed, and a failure's log tail shows exactly that.
        # Its default job rate limit (100/1s) leaves a 1 s timer thread that the process
        # waits for before it exits: a second of every job. A job runs one rule, so no
        # limit is needed ("0s": the timer fires at once). Nor is the ILP scheduler, which
        # starts the CBC solver for every job (a binary tool-only images cannot run): it
        # schedules greedily, after checking each job against the plan (plan_check.py).
        # In S3 storage mode its local copies stay in the scratch directory (removed with
        # it anyway) for the runner to see a directory's empty subdirectories.
        return (
            f"--quiet progress rules host --max-jobs-per-timespan 100/0s --scheduler {SCHEDULER} "
            "--keep-storage-local-copies"
        )

    # -- submission -----------------------------------------------------------------

    def run_jobs(self, jobs: Sequence[JobExecutorInterface]) -> None:
        """All jobs of one scheduling round at once: that is what makes array jobs."""
        for job in jobs:
            self.run_job_pre(job)
        self._dispatch(jobs)

    def run_job(self, job: JobExecutorInterface) -> None:
        self._dispatch([job])

    def _dispatch(self, jobs: Sequence[JobExecutorInterface]) -> None:
        try:
            self.dispatcher.dispatch(jobs, self._submitted)
        except SubmitError as e:
            raise WorkflowError(str(e)) from e

    def _submitted(self, job_info: SubmittedJobInfo) -> None:
        self._enter(job_info)
        self.report_job_submission(job_info)

    def _enter(self, job_info: SubmittedJobInfo) -> None:
        """Into the run report's ledger: what was asked of Batch for this job."""
        state: JobState = job_info.aux["state"]
        plan = state.plan
        self.ledger.add(
            run_report.Entry(
                job_id=job_info.external_jobid,
                rule=plan.label,
                queue=plan.queue,
                vcpus=plan.resources.vcpus,
                memory_mib=plan.resources.memory_mib,
                nodes=plan.nodes,
                moved=state.moved_to_priority,
                adopted=state.adopted_from is not None,
            )
        )

    def _succeeded(self, job_info: SubmittedJobInfo) -> None:
        self.ledger.outcome(job_info.external_jobid, "succeeded")
        self.report_job_success(job_info)

    def _failed(self, job_info: SubmittedJobInfo, **message: Any) -> None:
        self.ledger.outcome(job_info.external_jobid, "failed")
        self.report_job_error(job_info, **message)

    def _move_to_priority(self, job_info: SubmittedJobInfo) -> SubmittedJobInfo | None:
        """A job reclaimed on every spot attempt runs once more on the priority queue."""
        state: JobState = job_info.aux["state"]
        if (
            not self.priority_fallback
            or state.moved_to_priority
            or state.plan.queue == self.config.priority_queue
            or state.plan.nodes > 1  # on-demand only: never reclaimed
        ):
            return None
        try:
            plan = self.planner.plan(job_info.job, self.config.priority_queue)
        except ConfigError as e:  # e.g. a tool image whose runtime that queue lacks
            self.logger.error(f"Batch job {state.name} cannot move to the priority queue: {e}")
            return None
        self.logger.warning(
            f"Batch job {state.name} ({job_info.external_jobid}) lost its spot instance on "
            f"every attempt; resubmitting it to the priority queue {plan.queue}."
        )
        try:
            moved = self.dispatcher.resubmit(job_info.job, plan, suffix="-p")
        except SubmitError as e:
            self.logger.error(f"Moving {state.name} to the priority queue failed: {e}")
            return None
        moved.aux["state"].moved_to_priority = True
        self.ledger.outcome(job_info.external_jobid, "moved")
        self._enter(moved)
        return moved

    # -- status -----------------------------------------------------------------------

    async def check_active_jobs(
        self, active_jobs: list[SubmittedJobInfo]
    ) -> AsyncGenerator[SubmittedJobInfo, None]:
        if not self._ready or not active_jobs:
            for job_info in active_jobs:
                yield job_info
            return
        for job_info in await self.follower.round(active_jobs, self._describe):
            yield job_info

    async def _describe(self, ids: list[str]) -> dict[str, dict[str, Any]] | None:
        """DescribeJobs for these ids, 100 a call; None (and a longer pause) on failure."""
        details: dict[str, dict[str, Any]] = {}
        try:
            for chunk in status.chunks(ids):
                async with self.status_rate_limiter:
                    details.update(
                        await asyncio.to_thread(status.describe_batch, self.aws.batch, chunk)
                    )
        except botocore.exceptions.BotoCoreError as e:
            self._back_off(f"AWS Batch status check failed ({e})")
            return None
        except botocore.exceptions.ClientError as e:
            if not is_throttling(e) and error_code(e) not in {"ServerException", "InternalError"}:
                raise WorkflowError(f"AWS Batch DescribeJobs failed: {e}") from e
            self._back_off(f"AWS Batch is throttling status checks ({error_code(e)})")
            return None
        self.next_seconds_between_status_checks = self.round_seconds
        return details

    def _back_off(self, why: str) -> None:
        current = self.next_seconds_between_status_checks or self.round_seconds or 1
        self.next_seconds_between_status_checks = min(MAX_POLL_BACKOFF, max(2, current * 2))
        self.logger.warning(
            f"{why}; retrying in {self.next_seconds_between_status_checks} s. Jobs keep running."
        )

    # -- the end ------------------------------------------------------------------------

    def cancel_jobs(self, active_jobs: list[SubmittedJobInfo]) -> None:
        self.logger.info(f"Terminating {len(active_jobs)} AWS Batch job(s) of run {self.run_id}.")
        ids = [j.external_jobid for j in active_jobs if j.external_jobid]
        for job_id in ids:
            self.ledger.outcome(job_id, "cancelled")
        for job_id in arrays.terminations(ids, self.dispatcher.array_sizes):
            self._terminate(job_id, "cancelled")

    def shutdown(self) -> None:
        super().shutdown()
        stager = getattr(self, "stager", None)
        if stager is None:
            return
        orphans = getattr(self, "orphans", None)
        if orphans is None:  # start-up ended before the orphans were looked for
            orphans = Orphans.none()
        for orphan in orphans.leftovers():
            self._terminate(orphan.job_id, f"left by run {orphan.run_id}, not needed any more")
        stager.cleanup(orphans.runs)
        checkpoint_names.remove_names(self.workflow.dag)
        self.logger.info(f"AWS Batch run {self.run_id}: staging {stager.traffic.describe()}.")
        self._report_run(stager)

    def _report_run(self, stager: Stager) -> None:
        """The run report, once (Ctrl-C calls shutdown, and so may Snakemake again)."""
        ledger = getattr(self, "ledger", None)
        if ledger is None or self._reported or not ledger.entries():
            return  # nothing went to Batch
        self._reported = True
        try:
            report = run_report.build(
                self.run_id,
                ledger,
                lambda ids: status.describe_batch(self.aws.batch, ids),
                self._capacity,
                self.config.prices,
                dataclasses.asdict(stager.traffic),
            )
            path = report.write()
        except (*AWS_ERRORS, OSError) as e:
            self.logger.warning(f"AWS Batch run {self.run_id}: no run report ({e})")
            return
        self.logger.info(f"AWS Batch run {self.run_id}, per rule ({path}):\n{report.table()}")

    def _capacity(self, queue: str) -> str | None:
        """Spot or on-demand, as the queue's first compute environment provides."""
        try:
            environments = self.queues.get(queue).environments
        except (ConfigError, *AWS_ERRORS):
            return None
        return run_report.capacity_of(environments[0].kind) if environments else None

    def _terminate(self, job_id: str, why: str) -> None:
        reason = f"Snakemake run {self.run_id}: {why}"
        try:
            self.aws.batch.terminate_job(jobId=job_id, reason=reason)
        except AWS_ERRORS as e:
            self.logger.error(f"Could not terminate Batch job {job_id}: {e}")
