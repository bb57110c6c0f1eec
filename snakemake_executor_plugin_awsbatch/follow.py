"""Following submitted jobs to their end: one status round at a time.

Two sources, so that a finished job is noticed within about a second without asking
Batch about every job every second:
- each round lists the run's reports in S3 (one request for up to 1,000 jobs); a report
  that says "succeeded" ends its job at once: its outputs are in S3, verified;
- DescribeJobs (100 jobs a call) every `describe_every` seconds, and in the next round
  for a job whose runner reported a failure, tells what the reports cannot: jobs that
  never started, were reclaimed, timed out, got stuck or vanished.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.exceptions
from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo

from snakemake_executor_plugin_awsbatch import checkpoint_names, logs, multinode, status
from snakemake_executor_plugin_awsbatch.companions import Companions
from snakemake_executor_plugin_awsbatch.config import PluginConfig
from snakemake_executor_plugin_awsbatch.dispatch import JobState
from snakemake_executor_plugin_awsbatch.jobside.report import SUCCEEDED, Report
from snakemake_executor_plugin_awsbatch.staging import Stager, StagingError
from snakemake_executor_plugin_awsbatch.staging_files import job_inputs, job_products

LOG_DIR = Path(".snakemake") / "awsbatch-logs"
FAILED_REPORT_RECHECKS = 3
AWS_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


@dataclass
class Outcomes:
    """What the executor hands on to Snakemake (RemoteExecutor's report_job_* methods)."""

    success: Callable[[SubmittedJobInfo], None]
    error: Callable[..., None]  # (job_info, msg=..., aux_logs=...)
    move: Callable[[SubmittedJobInfo], SubmittedJobInfo | None]  # to the priority queue
    terminate: Callable[[str, str], None]


class Follower:
    def __init__(
        self,
        *,
        aws: Any,
        stager: Stager,
        companions: Companions,
        config: PluginConfig,
        outcomes: Outcomes,
        describe_every: float,
        warn: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ):
        self.aws = aws
        self.stager = stager
        self.companions = companions
        self.config = config
        self.outcomes = outcomes
        self.describe_every = describe_every
        self._warn = warn
        self._clock = clock
        self._last_describe: float | None = None
        self._seen: dict[str, str] = {}  # report URI -> ETag already read
        # Reports of failed runners: their jobs are described in the next rounds, not only
        # every describe_every seconds (Batch may still say RUNNING while the runner exits).
        self._failed_reports: dict[str, int] = {}  # report URI -> rounds left
        self._finished: set[str] = set()  # records of ended jobs, deleted after the round

    async def round(
        self, active: list[SubmittedJobInfo], describe: Callable[[list[str]], Any]
    ) -> list[SubmittedJobInfo]:
        """Act on what changed; -> the jobs still running. `describe(ids)` is awaited and
        gives DescribeJobs' answers by id, or None when it failed (the executor rate-limits
        it and backs off). No AWS error ends the round: the job concerned waits for the next."""
        try:
            reports = await asyncio.to_thread(self._new_reports, active)
        except AWS_ERRORS as e:
            self._warn(f"Listing the jobs' reports in S3 failed ({e}); trying again")
            reports = {}
        done = [j for j in active if _succeeded(reports.get(_state(j).report_uri))]
        rest = [j for j in active if j not in done]
        now = self._clock()
        due = self._last_describe is None or now - self._last_describe >= self.describe_every
        asked = rest if due else [j for j in rest if self._recheck(_state(j).report_uri)]
        details = await describe([j.external_jobid for j in asked]) if asked else {}
        if details is None:
            asked = []
        elif due:
            self._last_describe = now
        followed = await asyncio.gather(
            *(
                self._guarded(self._finish_reported(j, reports[_state(j).report_uri]), j)
                for j in done
            ),
            *(
                self._guarded(self._follow(j, (details or {}).get(j.external_jobid), now), j)
                for j in asked
            ),
        )
        still = [j for j in followed if j is not None]
        still += [j for j in rest if j not in asked]
        await asyncio.to_thread(self._housekeeping)
        return still

    async def _guarded(
        self, step: Awaitable[SubmittedJobInfo | None], job_info: SubmittedJobInfo
    ) -> SubmittedJobInfo | None:
        """An AWS error while acting on a job keeps the job for the next round."""
        try:
            return await step
        except AWS_ERRORS as e:
            self._warn(f"Following Batch job {job_info.external_jobid} failed ({e}); retrying")
            return job_info

    # -- reports ---------------------------------------------------------------------

    def _new_reports(self, active: list[SubmittedJobInfo]) -> dict[str, Report | None]:
        """Reports written or rewritten since the last round, for these jobs."""
        wanted = {_state(j).report_uri for j in active}
        listed = self.stager.list_reports({_reports_dir(uri) for uri in wanted})
        fresh = {u: e for u, e in listed.items() if u in wanted and self._seen.get(u) != e}
        found: dict[str, Report | None] = {}
        for uri, etag in fresh.items():
            try:
                found[uri] = report = self.stager.read_report(uri)
            except AWS_ERRORS:
                continue  # not marked seen: read again next round
            self._seen[uri] = etag
            if report is not None and report.status != SUCCEEDED:
                self._failed_reports[uri] = FAILED_REPORT_RECHECKS
        return found

    def _recheck(self, report_uri: str) -> bool:
        left = self._failed_reports.get(report_uri, 0)
        if left:
            self._failed_reports[report_uri] = left - 1
        return left > 0

    async def _finish_reported(self, job_info: SubmittedJobInfo, report: Report | None) -> None:
        assert report is not None
        await asyncio.to_thread(self._fetch_and_report, job_info, report)

    # -- one job -----------------------------------------------------------------------

    async def _follow(
        self, job_info: SubmittedJobInfo, detail: dict[str, Any] | None, now: float
    ) -> SubmittedJobInfo | None:
        """Act on one job's Batch state; -> the job info to keep following, if any."""
        state = _state(job_info)
        verdict = status.classify(detail, state.tracking, now, self.config.unschedulable_timeout)
        if verdict is status.Verdict.ACTIVE:
            return job_info
        if verdict is status.Verdict.SUCCEEDED:
            await asyncio.to_thread(self._finish, job_info)
        elif verdict is status.Verdict.SPOT_RECLAIMED:
            moved = await asyncio.to_thread(self.outcomes.move, job_info)
            if moved is not None:
                self._ended(state)
                return moved
            assert detail is not None
            await asyncio.to_thread(self._report_failure, job_info, detail)
        elif verdict is status.Verdict.LOST:
            self._error(
                job_info,
                msg=f"AWS Batch no longer knows job {state.name} ({job_info.external_jobid}): "
                f"it was missing from {status.LOST_AFTER_ROUNDS} status checks in a row. ",
            )
        elif verdict is status.Verdict.UNSCHEDULABLE:
            assert detail is not None
            await asyncio.to_thread(
                self.outcomes.terminate, job_info.external_jobid, "unschedulable"
            )
            self._error(
                job_info,
                msg=f"AWS Batch job {state.name} ({job_info.external_jobid}) could not be "
                f"placed for {self.config.unschedulable_timeout} s on queue {state.plan.queue}: "
                f"{detail.get('statusReason')}. It was terminated. ",
            )
        else:
            assert detail is not None
            await asyncio.to_thread(self._report_failure, job_info, detail)
        return None

    def _finish(self, job_info: SubmittedJobInfo) -> None:
        """A SUCCEEDED Batch job: bring its files back, then tell Snakemake."""
        state = _state(job_info)
        report = self.stager.read_report(state.report_uri)
        if report is None:
            self._error(
                job_info,
                msg=f"AWS Batch job {state.name} ({job_info.external_jobid}) ended but its "
                "runner wrote no report. ",
            )
        else:
            self._fetch_and_report(job_info, report)

    def _fetch_and_report(self, job_info: SubmittedJobInfo, report: Report) -> None:
        state = _state(job_info)
        problem = None
        if report.status != SUCCEEDED:
            problem = report.error or f"its runner reported {report.status}"
        else:
            try:
                self.stager.fetch_products(report, ("output", "log", "benchmark"))
                checkpoint_names.write_names(
                    self.stager.client, checkpoint_names.checkpoint_directories(job_info.job)
                )
            except StagingError as e:
                problem = str(e)
            except (*AWS_ERRORS, OSError) as e:
                problem = f"its checkpoint directory's names could not be written here: {e}"
        if problem:
            self._error(
                job_info,
                msg=f"AWS Batch job {state.name} ({job_info.external_jobid}) ended but {problem}. ",
            )
        else:
            self._ended(state)
            self.outcomes.success(job_info)

    def _report_failure(self, job_info: SubmittedJobInfo, detail: dict[str, Any]) -> None:
        state = _state(job_info)
        message = (
            f"AWS Batch job {state.name} ({job_info.external_jobid}) on queue "
            f"{state.plan.queue}, image {state.plan.image}, failed: "
            f"{status.failure_summary(detail)}."
        )
        if status.could_not_start(detail):
            message += (
                f" Its container never started (after {len(detail.get('attempts') or [])} "
                f"attempts): check that the image {state.plan.image} exists and that the "
                "instances may pull it."
            )
        report = self.stager.read_report(state.report_uri)
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
        tail, lines, aux_logs = self._log_tail(state, detail)
        # A tool that missed an index file beside its input: say which were not staged.
        products = [p.path for p in job_products(job_info.job)]
        hint = self.companions.failure_hint(job_inputs(job_info.job), products, lines)
        self._error(job_info, msg=message + tail + hint + "\n", aux_logs=aux_logs)

    def _log_tail(
        self, state: JobState, detail: dict[str, Any]
    ) -> tuple[str, list[str], list[str]]:
        """(the tail for the message, the log's lines, the saved log's path)."""
        stream = status.log_stream(detail) or self._main_node_stream(detail)
        if not stream:
            return "\nIt has no log stream (it never started).", [], []
        group = self.config.log_group
        try:
            lines = logs.fetch_log(self.aws.logs, group, stream)
        except botocore.exceptions.ClientError as e:
            return f"\nIts log {group}/{stream} could not be read: {e}", [], []
        path = logs.save_log(lines, LOG_DIR / f"{state.key.replace('/', '-')}.log")
        shown = logs.tail(lines, self.config.log_tail_lines)
        text = (
            f"\nLast {len(shown)} lines its command printed ({group}/{stream}):\n"
            + "".join(f"    {line}\n" for line in shown)
            + f"Whole log: {path}"
        )
        return text, logs.printed(lines), [str(path)]

    def _main_node_stream(self, detail: dict[str, Any]) -> str | None:
        """A multi-node job's log is its main node's: one more DescribeJobs, on failure only."""
        main = multinode.main_node_job_id(detail)
        if main is None:
            return None
        try:
            found = self.aws.batch.describe_jobs(jobs=[main]).get("jobs", [])
        except AWS_ERRORS:
            return None
        return status.log_stream(found[0]) if found else None

    # -- after the round ---------------------------------------------------------------

    def _error(self, job_info: SubmittedJobInfo, **message: Any) -> None:
        self._ended(_state(job_info))
        self.outcomes.error(job_info, **message)

    def _ended(self, state: JobState) -> None:
        """The job's outcome is told: its records can go (after the round); an array's
        pack once its last child has ended."""
        if state.records_released:
            return
        state.records_released = True
        self._finished.add(state.report_uri)
        if state.pack is None:
            self._finished.add(state.manifest_uri)
        elif state.pack.release():
            self._finished.add(state.pack.uri)

    def _housekeeping(self) -> None:
        """Delete the records of ended jobs and the S3 copies of deleted temp() outputs."""
        finished, self._finished = self._finished, set()
        for uri in finished:
            self._seen.pop(uri, None)
            self._failed_reports.pop(uri, None)
        try:
            self.stager.forget(sorted(finished))
            self.stager.forget_deleted_temp_outputs()
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
            self._finished |= finished  # again next round


def _state(job_info: SubmittedJobInfo) -> JobState:
    state: JobState = job_info.aux["state"]
    return state


def _succeeded(report: Report | None) -> bool:
    return report is not None and report.status == SUCCEEDED


def _reports_dir(report_uri: str) -> str:
    """The reports directory of the job's run (array children have a folder below it)."""
    return report_uri.rsplit("/reports/", 1)[0] + "/reports"
