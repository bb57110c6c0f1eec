"""From the jobs Snakemake hands over in one scheduling round to Batch submissions.

Per round: every job is planned and its command built (on Snakemake's thread: these
read Snakemake's job objects); the inputs of all jobs are staged in one batch; a job
that a dead run left running is adopted instead of submitted (adoption.py); the rest
are grouped into array jobs (arrays.py), their manifests written in parallel (one
object per submission: a job's manifest, or an array's pack), and the submissions sent in
parallel, at the rate the submitter allows (submission.py).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo

from snakemake_executor_plugin_awsbatch import arrays, multinode, runtime, status
from snakemake_executor_plugin_awsbatch.adoption import Orphan, Orphans, fingerprint, identity
from snakemake_executor_plugin_awsbatch.checkpoint_names import UpstreamNames
from snakemake_executor_plugin_awsbatch.companions import Companions, StorageCompanions
from snakemake_executor_plugin_awsbatch.jobside.manifest import (
    DirectoryNames,
    InputEntry,
    Manifest,
    NodeGroup,
    StorageDirectory,
    pack,
)
from snakemake_executor_plugin_awsbatch.jobside.planned import planned_jobs
from snakemake_executor_plugin_awsbatch.plan import JobPlan, Planner
from snakemake_executor_plugin_awsbatch.staging import Product, Stager
from snakemake_executor_plugin_awsbatch.staging_files import (
    job_inputs,
    job_products,
    storage_directories,
    storage_inputs,
    storage_outputs,
)
from snakemake_executor_plugin_awsbatch.submission import SubmitError, Submitter
from snakemake_executor_plugin_awsbatch.submit import job_name, submit_request, tag_value

RUNNER = ["python", "-m", "snakemake_executor_plugin_awsbatch.jobside"]


def job_command(plan: JobPlan, runner_args: list[str]) -> list[str]:
    """The container command: the image's own Python runs the runner, or, in a tool
    image, the job runtime's Python (started by the image's /bin/sh)."""
    if plan.runtime:
        return runtime.launcher_command(plan.runtime, runner_args)
    return [*RUNNER, *runner_args]


@dataclass
class JobState:
    """What the executor remembers about one submitted job (SubmittedJobInfo.aux)."""

    plan: JobPlan
    name: str  # the Batch job's name (for a child: its array's)
    key: str  # where its records are: <run>/jobs/<key>/manifest.json, reports/<key>.json
    manifest_uri: str  # for an array child: its array's pack
    report_uri: str
    tracking: status.Tracking = field(default_factory=status.Tracking)
    pack: arrays.Pack | None = None  # an array child's shared manifest object
    records_released: bool = False  # its ended records counted once (follow.py)
    moved_to_priority: bool = False
    adopted_from: str | None = None  # the dead run's id


@dataclass
class _Item:
    """One Snakemake job on its way to Batch."""

    job: Any
    plan: JobPlan
    command: str
    inputs: list[str]
    products: list[Product]
    identity: str
    in_storage: list[InputEntry]  # index files next to its inputs in S3 storage
    directories: list[StorageDirectory]  # its directory() files in S3 storage
    planned: list[dict[str, Any]]  # what each of its rules reads and writes (planned.py)
    names: list[DirectoryNames]  # of the checkpoint directories upstream of it
    entries: list[InputEntry] = field(default_factory=list)
    fingerprint: str = ""

    @property
    def tags(self) -> str:
        return tag_value("+".join(sorted(self.job.rules)))

    def staged(self, entries: list[InputEntry]) -> None:
        """Its inputs are in S3: what it reads, and so what it computes, is known."""
        self.entries = entries + self.in_storage
        self.fingerprint = fingerprint(self.identity, self.command, self.entries, self.planned)


@dataclass
class _Submission:
    name: str
    members: list[_Item]
    manifests: list[Manifest]
    manifest_uri: str  # the job's manifest, or the array's pack
    body: bytes
    record_bytes: int | None  # an array's: the width of each child's record in the pack

    @property
    def is_array(self) -> bool:
        return len(self.members) >= arrays.MIN_SIZE


class Dispatcher:
    def __init__(
        self,
        *,
        run_id: str,
        planner: Planner,
        stager: Stager,
        companions: Companions,
        storage_companions: StorageCompanions,
        upstream_names: UpstreamNames,
        submitter: Submitter,
        orphans: Orphans,
        format_job_exec: Callable[[Any], str],
        environment: dict[str, str],
        tags: dict[str, str],
        spot_retries: int,
        scratch_root: str,
        max_array_size: int,
        node_join_timeout: int,
        terminate: Callable[[str, str], None],
        log: Callable[[str], None],
        console_url: Callable[[str], str],
    ):
        self.run_id = run_id
        self.planner = planner
        self.stager = stager
        self.companions = companions
        self.storage_companions = storage_companions
        self.upstream_names = upstream_names
        self.submitter = submitter
        self.orphans = orphans
        self.format_job_exec = format_job_exec
        self.environment = environment
        self.tags = tags
        self.spot_retries = spot_retries
        self.scratch_root = scratch_root
        self.max_array_size = max_array_size
        self.node_join_timeout = node_join_timeout
        self.terminate = terminate
        self.log = log
        self.console_url = console_url
        self.array_sizes: dict[str, int] = {}  # array id -> children, for cancelling
        self._arrays = itertools.count(1)
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="awsbatch-submit")

    def dispatch(self, jobs: Sequence[Any], report: Callable[[SubmittedJobInfo], None]) -> None:
        """Adopt or submit every job; `report` gets each one's info as Batch has it."""
        started = time.monotonic()
        self.storage_companions.new_round()
        items = [self._item(job) for job in jobs]
        for item, entries in zip(
            items, self.stager.job_inputs([i.inputs for i in items]), strict=True
        ):
            item.staged(entries)
        fresh = []
        for item in items:
            orphan = self._claim(item)
            if orphan:
                report(self._adopt(item, orphan))
            else:
                fresh.append(item)
        submissions = [
            self._submission(members)
            for members in arrays.group(fresh, self._array_key, self.max_array_size)
        ]
        self.stager.put_records([(s.manifest_uri, s.body) for s in submissions])
        futures = [self._pool.submit(self._send, s) for s in submissions]
        failed: list[str] = []
        for submission, future in zip(submissions, futures, strict=True):
            try:
                job_id = future.result()
            except SubmitError as e:
                failed.append(f"SubmitJob {submission.name}: {e}")
                continue
            # Reported even when another submission failed: Snakemake then cancels them.
            for info in self._infos(submission, job_id):
                report(info)
        if failed:
            raise SubmitError("; ".join(failed))
        if len(fresh) > 1:
            self.log(
                f"Submitted {len(fresh)} jobs as {len(submissions)} Batch submissions in "
                f"{time.monotonic() - started:.2f} s"
            )

    def resubmit(self, job: Any, plan: JobPlan, suffix: str) -> SubmittedJobInfo:
        """One job alone, e.g. a spot-reclaimed array child moving to the priority queue."""
        item = self._item(job, plan)
        (entries,) = self.stager.job_inputs([item.inputs])
        item.staged(entries)
        submission = self._submission([item], suffix)
        self.stager.put_records([(submission.manifest_uri, submission.body)])
        (info,) = self._infos(submission, self._send(submission))
        return info

    # -- the steps -----------------------------------------------------------------

    def _item(self, job: Any, plan: JobPlan | None = None) -> _Item:
        inputs, products = job_inputs(job), job_products(job)
        return _Item(
            job=job,
            plan=plan or self.planner.plan(job),
            command=self.format_job_exec(job),
            inputs=inputs + self.companions.of_job(inputs, [p.path for p in products]),
            products=products,
            identity=identity(job),
            in_storage=self.storage_companions.of_job(storage_inputs(job), storage_outputs(job)),
            directories=storage_directories(
                job, self.storage_companions.local_prefix, self.storage_companions.job_prefix
            ),
            planned=planned_jobs(job),
            names=self.upstream_names.of_job(job),
        )

    def _claim(self, item: _Item) -> Orphan | None:
        orphan, stale = self.orphans.claim(item.identity, item.fingerprint)
        if stale and orphan:
            self.terminate(orphan.job_id, f"left by run {orphan.run_id}, computes an old version")
            return None
        return orphan

    def _adopt(self, item: _Item, orphan: Orphan) -> SubmittedJobInfo:
        # Registers the job's temp() outputs under the dead run's key, as its report names.
        self.stager.manifest(orphan.key, item.command, item.entries, item.products, {})
        plan = self.planner.plan(item.job, orphan.queue)
        self.log(
            f"Rule {plan.label} (Snakemake job {item.job.jobid}): following Batch job "
            f"{orphan.job_id} ({orphan.status}) that the dead run {orphan.run_id} left, "
            "instead of submitting it again"
        )
        state = JobState(
            plan=plan,
            name=orphan.key,
            key=orphan.key,
            manifest_uri=orphan.manifest_uri,
            report_uri=orphan.report_uri,
            adopted_from=orphan.run_id,
            pack=arrays.Pack(orphan.manifest_uri, pending=None) if orphan.packed else None,
        )
        return SubmittedJobInfo(job=item.job, external_jobid=orphan.job_id, aux={"state": state})

    @staticmethod
    def _array_key(item: _Item) -> tuple[Any, ...]:
        if item.plan.nodes > 1:
            return (id(item),)  # Batch has no multi-node arrays: each goes alone
        return (item.plan, item.tags)

    def _submission(self, members: list[_Item], suffix: str = "") -> _Submission:
        first = members[0]
        is_array = len(members) >= arrays.MIN_SIZE
        if is_array:
            name = job_name(first.plan.label, f"{self.run_id[:8]}-x{next(self._arrays)}")
            keys = [f"{name}/{index}" for index in range(len(members))]
        else:
            job = first.job
            jobid = str(job.jobid).replace("-", "")[:12] if job.is_group() else str(job.jobid)
            unique = f"{self.run_id[:8]}-{jobid}-a{job.attempt}{suffix}"
            name = job_name(first.plan.label, unique)
            keys = [name]
        manifests = [
            self.stager.manifest(
                key,
                item.command,
                item.entries,
                item.products,
                {
                    "identity": item.identity,
                    "fingerprint": item.fingerprint,
                    "submission": name,
                    "queue": item.plan.queue,
                    "index": str(index) if len(members) > 1 else "",
                },
                item.directories,
                self._node_group(item.plan),
                item.planned,
                item.names,
            )
            for index, (key, item) in enumerate(zip(keys, members, strict=True))
        ]
        if is_array:
            body, width = pack(manifests)
            return _Submission(name, members, manifests, self.stager.pack_uri(name), body, width)
        uri = self.stager.job_uris(keys[0])[0]
        return _Submission(name, members, manifests, uri, manifests[0].to_json().encode(), None)

    def _node_group(self, plan: JobPlan) -> NodeGroup | None:
        if plan.nodes == 1:
            return None
        return multinode.node_group(
            plan.nodes,
            plan.resources.vcpus,
            self.node_join_timeout,
            sources=len(self.stager.sources),  # each job's inputs begin with them
            all_inputs=plan.all_node_inputs,
        )

    def _send(self, submission: _Submission) -> str:
        first = submission.members[0]
        record = ["--record-bytes", str(submission.record_bytes)] if submission.is_array else []
        args = [
            *(submission.manifest_uri, *record),
            *("--scratch-root", self.scratch_root, "--image", first.plan.image),
        ]
        request = submit_request(
            name=submission.name,
            queue=first.plan.queue,
            job_definition=first.plan.job_definition,
            command=job_command(first.plan, args),
            environment=self.environment,
            resources=first.plan.resources,
            spot_retries=self.spot_retries,
            tags={**self.tags, "snakemake-run": self.run_id, "snakemake-rule": first.tags},
            array_size=len(submission.members) if submission.is_array else None,
            nodes=first.plan.nodes,
        )
        return self.submitter.submit(request)

    def _infos(self, submission: _Submission, job_id: str) -> list[SubmittedJobInfo]:
        plan = submission.members[0].plan
        if submission.is_array:
            self.array_sizes[job_id] = len(submission.members)
            ids = [arrays.child_id(job_id, i) for i in range(len(submission.members))]
            jobs = ", ".join(str(m.job.jobid) for m in submission.members)
            self.log(
                f"Submitted {len(ids)} jobs of rule {plan.label} (Snakemake jobs {jobs}) as "
                f"Batch array job {job_id} (children {ids[0]}..{ids[-1]}) on queue "
                f"{plan.queue} [{plan.resources.describe()}]: {self.console_url(job_id)}"
            )
        else:
            ids = [job_id]
            nodes = f"{plan.nodes} nodes of " if plan.nodes > 1 else ""
            kind = "multi-node parallel job" if plan.nodes > 1 else "job"
            self.log(
                f"Submitted rule {plan.label} (Snakemake job {submission.members[0].job.jobid}) "
                f"as Batch {kind} {job_id} on queue {plan.queue} "
                f"[{nodes}{plan.resources.describe()}]: {self.console_url(job_id)}"
            )
        shared = None
        if submission.is_array:
            shared = arrays.Pack(submission.manifest_uri, pending=len(submission.members))
        infos = []
        for item, manifest, batch_id in zip(
            submission.members, submission.manifests, ids, strict=True
        ):
            state = JobState(
                item.plan,
                submission.name,
                manifest.jobname,
                submission.manifest_uri,
                manifest.report_uri,
                pack=shared,
            )
            infos.append(
                SubmittedJobInfo(job=item.job, external_jobid=batch_id, aux={"state": state})
            )
        return infos
