"""Jobs left behind by a Snakemake run that died (SIGKILL, a crashed laptop): found again.

Every run keeps records in S3 while it runs: `run.json` (its working directory) and
one manifest per submitted job (an array's in one pack), written before the job is
submitted, that notes the submission's name, queue and array index and the job's
identity (rules and outputs) and fingerprint (command and inputs). A run that ends
normally deletes its records, and each job's records go as soon as its outcome is told
(a pack when its last child has ended), so what a later run finds for the same working
directory are the jobs a dead run left unfinished: those still active, and those that
succeeded with their report still there (the dead run never fetched their outputs).

A new run then, before submitting anything:
- finds those jobs in Batch (ListJobs by the submission's unique name, DescribeJobs);
- terminates the running ones whose outputs it does not need (no planned job has that
  identity);
- when Snakemake hands it a job whose fingerprint matches a job still running or one that
  succeeded meanwhile, follows that job instead of submitting it again (its report and
  outputs are where the dead run would have found them);
- at its end terminates whatever it found but did not use, and deletes the dead run's
  records.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from snakemake_executor_plugin_awsbatch import arrays, status
from snakemake_executor_plugin_awsbatch.jobside.manifest import (
    PACK_NAME,
    InputEntry,
    Manifest,
    unpack,
)
from snakemake_executor_plugin_awsbatch.staging import RUNS_DIR, Stager
from snakemake_executor_plugin_awsbatch.transfer import S3Uri

ACTIVE = {"SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING"}
ADOPTABLE = ACTIVE | {"SUCCEEDED"}


def identity(job: Any) -> str:
    """Which Snakemake job this is, whatever run: its rules and outputs."""
    outputs = sorted(str(f) for f in job.output)
    return _digest({"rules": sorted(job.rules), "outputs": outputs})


def fingerprint(
    job_identity: str,
    command: str,
    inputs: Iterable[InputEntry],
    planned: Sequence[Mapping[str, Any]] = (),
) -> str:
    """What the job would compute: same command, same input contents, same planned files
    (in S3 storage, the inputs are only named there)."""
    files = sorted((e.path, e.sha256) for e in inputs)
    return _digest(
        {
            "job": job_identity,
            "command": _command_words(command),
            "inputs": files,
            "planned": list(planned),
        }
    )


def _command_words(command: str) -> list[str]:
    """The command's words, in an order that does not change between runs: Snakemake
    writes some option values from sets (`--rerun-triggers`), whose order varies from one
    process to the next. Without the attempt number, which every run counts afresh."""
    try:
        words = shlex.split(command)
    except ValueError:
        return [command]
    if "--attempt" in words:
        at = words.index("--attempt")
        del words[at : at + 2]
    return sorted(words)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:32]


@dataclass
class Orphan:
    run_id: str
    key: str  # the job's records (manifest, report) in its run
    report_uri: str
    manifest_uri: str
    identity: str
    fingerprint: str
    queue: str
    job_id: str
    status: str
    packed: bool = False  # an array child: manifest_uri is its array's pack


class Orphans:
    def __init__(self, orphans: list[Orphan], runs: list[str]):
        self._by_identity = {o.identity: o for o in orphans}
        self.runs = runs  # ids of the dead runs whose records this run deletes at its end
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._by_identity)

    @classmethod
    def none(cls) -> Orphans:
        return cls([], [])

    @classmethod
    def find(cls, stager: Stager, batch: Any, lookup: Callable[[str, str], str | None]) -> Orphans:
        """The unfinished jobs of dead runs in this working directory.

        `lookup(name, queue)` -> the Batch id of the submission of that name, if any."""
        runs = _dead_runs(stager)
        read = [pair for run in runs for pair in _manifests(stager, run)]
        manifests = [m for m, _ in read]
        reports = {uri for run in runs for uri in stager.list_reports([_reports_dir(stager, run)])}
        ids = _submission_ids(manifests, lookup)
        described = _describe(batch, [i for i in ids.values() if i])
        found = []
        for manifest, uri in read:
            job_id = ids.get(manifest.jobname)
            state = described.get(job_id or "")
            # A success without its report was told and fetched (its pack outlived it).
            told = state == "SUCCEEDED" and manifest.report_uri not in reports
            if job_id and state in ADOPTABLE and not told:
                found.append(_orphan(manifest, uri, job_id, state))
        return cls(found, runs)

    def unneeded(self, identities: set[str]) -> list[Orphan]:
        """Running orphans no planned job needs; forgotten here, for the caller to end."""
        with self._lock:
            gone = [o for o in self._by_identity.values() if o.identity not in identities]
            for orphan in gone:
                del self._by_identity[orphan.identity]
        return [o for o in gone if o.status in ACTIVE]

    def claim(self, job_identity: str, job_fingerprint: str) -> tuple[Orphan | None, bool]:
        """(the orphan to adopt for this job, whether one of its identity must be ended
        instead because it computes something else, e.g. with an edited command)."""
        with self._lock:
            orphan = self._by_identity.pop(job_identity, None)
        if orphan is None:
            return None, False
        if orphan.fingerprint == job_fingerprint:
            return orphan, False
        return orphan, orphan.status in ACTIVE

    def leftovers(self) -> list[Orphan]:
        """Running orphans no job of this run asked for."""
        with self._lock:
            left = list(self._by_identity.values())
            self._by_identity.clear()
        return [o for o in left if o.status in ACTIVE]


def _dead_runs(stager: Stager) -> list[str]:
    """Ids of the other runs in this working directory whose records are still in S3."""
    base = S3Uri.parse(stager.location.uri(RUNS_DIR) + "/")
    runs = []
    pages = stager.client.get_paginator("list_objects_v2").paginate(
        Bucket=base.bucket, Prefix=base.key, Delimiter="/"
    )
    for page in pages:
        for prefix in page.get("CommonPrefixes", []):
            run_id = prefix["Prefix"].rstrip("/").rsplit("/", 1)[-1]
            if run_id != stager.run_id:
                runs.append(run_id)
    return [r for r in runs if _workdir_of(stager, r) == str(stager.workdir)]


def _workdir_of(stager: Stager, run_id: str) -> str | None:
    uri = S3Uri.parse(stager.location.uri(RUNS_DIR, run_id, "run.json"))
    try:
        body = stager.client.get_object(Bucket=uri.bucket, Key=uri.key)["Body"].read()
        return str(json.loads(body).get("workdir"))
    except Exception:  # no record, or not ours: not a run to take over
        return None


def _reports_dir(stager: Stager, run_id: str) -> str:
    return stager.location.uri(RUNS_DIR, run_id, "reports")


def _manifests(stager: Stager, run_id: str) -> list[tuple[Manifest, str]]:
    """(manifest, the URI it was read from: a job's own or its array's pack)."""
    base = S3Uri.parse(stager.location.uri(RUNS_DIR, run_id, "jobs") + "/")
    keys = [
        item["Key"]
        for page in stager.client.get_paginator("list_objects_v2").paginate(
            Bucket=base.bucket, Prefix=base.key
        )
        for item in page.get("Contents", [])
        if item["Key"].endswith(("/manifest.json", "/" + PACK_NAME))
    ]

    def read(key: str) -> list[tuple[Manifest, str]]:
        body = stager.client.get_object(Bucket=base.bucket, Key=key)["Body"].read()
        found = unpack(body) if key.endswith(PACK_NAME) else [Manifest.from_json(body)]
        return [(m, f"s3://{base.bucket}/{key}") for m in found]

    with ThreadPoolExecutor(max_workers=16) as pool:
        found = [pair for pairs in pool.map(read, keys) for pair in pairs]
    return [(m, uri) for m, uri in found if m.record.get("identity")]


def _submission_ids(
    manifests: list[Manifest], lookup: Callable[[str, str], str | None]
) -> dict[str, str | None]:
    """Job key -> Batch id (an array child's for children), one look-up per submission."""
    submissions = {(m.record["submission"], m.record["queue"]) for m in manifests}
    found = {name: lookup(name, queue) for name, queue in sorted(submissions)}
    ids: dict[str, str | None] = {}
    for m in manifests:
        parent, index = found[m.record["submission"]], m.record.get("index", "")
        ids[m.jobname] = arrays.child_id(parent, int(index)) if parent and index else parent
    return ids


def _describe(batch: Any, ids: list[str]) -> dict[str, str]:
    states: dict[str, str] = {}
    for chunk in status.chunks(ids):
        for job_id, detail in status.describe_batch(batch, chunk).items():
            states[job_id] = str(detail.get("status"))
    return states


def _orphan(manifest: Manifest, manifest_uri: str, job_id: str, state: str) -> Orphan:
    return Orphan(
        run_id=manifest.run_id,
        key=manifest.jobname,
        report_uri=manifest.report_uri,
        manifest_uri=manifest_uri,
        identity=manifest.record["identity"],
        fingerprint=manifest.record["fingerprint"],
        queue=manifest.record["queue"],
        job_id=job_id,
        status=state,
        packed=manifest_uri.endswith(PACK_NAME),
    )
