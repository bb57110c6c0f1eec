"""The submitting side of S3 staging: what each job's runner fetches, runs and sends back.

Layout under the S3 location (`--awsbatch-s3-prefix`, or the default storage prefix):

    <prefix>/<relative path>                   mirror of the working directory: sources,
                                               inputs, outputs (kept; reruns upload nothing)
    <prefix>/_awsbatch/runs/<run id>/...       the run's manifests and reports (removed at
                                               the end of the run; a lifecycle rule of the
                                               project's bucket expires leftovers)

In staged mode the plugin uploads local inputs and brings outputs, logs and
benchmarks back; in storage mode (`--default-storage-provider s3`) Snakemake's
storage plugin moves data and the plugin only ships the sources.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from snakemake_executor_plugin_awsbatch.config import S3Location
from snakemake_executor_plugin_awsbatch.errors import ConfigError
from snakemake_executor_plugin_awsbatch.jobside.manifest import (
    PACK_NAME,
    DirectoryNames,
    InputEntry,
    Manifest,
    NodeGroup,
    OutputEntry,
    StorageDirectory,
)
from snakemake_executor_plugin_awsbatch.jobside.report import Report
from snakemake_executor_plugin_awsbatch.transfer import (
    FileResult,
    FileStamp,
    HashCache,
    S3Uri,
    TransferError,
    UploadItem,
    download_files,
    make_s3_client,
    upload_files,
)
from snakemake_executor_plugin_awsbatch.transfer.paths import checked_relpath

RUNS_DIR = "_awsbatch/runs"
HASH_CACHE = Path(".snakemake") / "awsbatch" / "hashes.json"


class StagingError(ConfigError):
    """A file cannot be staged; the message names it."""


@dataclass(frozen=True)
class Product:
    """A file a job writes: where it lands locally and in S3."""

    path: str
    is_dir: bool
    kind: str  # output | log | benchmark
    temp: bool = False


@dataclass
class Traffic:
    """What staging moved in one run, for the summary at its end."""

    uploaded_files: int = 0
    uploaded_bytes: int = 0
    unchanged_files: int = 0  # staged, but S3 already held the same content
    fetched_files: int = 0
    fetched_bytes: int = 0

    def count_uploads(self, results: Iterable[FileResult]) -> None:
        for r in results:
            sent = 0 if r.skipped else r.files
            self.uploaded_files += sent
            self.uploaded_bytes += r.transferred
            self.unchanged_files += r.files - sent

    def describe(self) -> str:
        return (
            f"uploaded {self.uploaded_files} files ({_mb(self.uploaded_bytes)}), "
            f"{self.unchanged_files} were already in S3; fetched {self.fetched_files} "
            f"files ({_mb(self.fetched_bytes)})"
        )


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


class Stager:
    def __init__(
        self,
        location: S3Location,
        run_id: str,
        workdir: Path,
        staged: bool,
        input_cache: str = "off",  # the instances' input cache, for the runners (cache.py)
    ):
        self.location = location
        self.input_cache = input_cache
        self.run_id = run_id
        self.workdir = workdir
        # Staged: the plugin moves inputs and outputs. Otherwise Snakemake's storage does.
        self.staged = staged
        self.client = make_s3_client()
        self.hashes = HashCache(workdir / HASH_CACHE)
        self.sources: list[InputEntry] = []
        # temp() outputs by job, until the job's files are fetched; then local path -> URI
        # of the ones Snakemake will delete locally (and we then in S3).
        self._pending_temp: dict[str, dict[str, str]] = {}
        self._temp_uris: dict[str, str] = {}
        # Files known to be in S3 as they are now (staged or fetched in this run), so a
        # reference that 2,000 jobs read costs one upload check, not 2,000.
        self._in_s3: dict[str, tuple[FileStamp, InputEntry]] = {}
        self.traffic = Traffic()
        self._lock = threading.Lock()
        # Manifests of many jobs go out in parallel; the client's pool has room for this.
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="awsbatch-stage")

    # -- run level -------------------------------------------------------------------

    @property
    def run_prefix(self) -> str:
        return self.location.uri(RUNS_DIR, self.run_id)

    def mirror_uri(self, path: str) -> str:
        return self.location.uri(path)

    def check_writable(self) -> None:
        """Write the run's record: proves the bucket exists and accepts our objects."""
        record = {"run_id": self.run_id, "workdir": str(self.workdir), "started": time.time()}
        uri = S3Uri.parse(f"{self.run_prefix}/run.json")
        try:
            self.client.put_object(Bucket=uri.bucket, Key=uri.key, Body=json.dumps(record))
        except (ClientError, BotoCoreError) as e:
            raise StagingError(
                f"Cannot write to s3://{self.location.bucket}/{self.location.key}: {e}; check "
                "that the bucket exists in this account and that your credentials may write "
                "to it (--awsbatch-s3-prefix)"
            ) from None

    def stage_sources(self, paths: Iterable[str]) -> None:
        """Upload the workflow's sources (Snakefile, rules, scripts, configs) once per run."""
        relative = [self._relative(p, "source file") for p in sorted(set(paths))]
        self.sources = self._upload(relative)

    def cleanup(self, other_runs: Iterable[str] = ()) -> None:
        """Remove the records of this run (and of crashed runs it took over), and temp
        outputs Snakemake deleted."""
        self.forget_deleted_temp_outputs()
        self.hashes.save()
        for run_id in (self.run_id, *other_runs):
            self._delete_below(self.location.uri(RUNS_DIR, run_id) + "/")

    def _delete_below(self, prefix: str) -> None:
        base = S3Uri.parse(prefix)
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=base.bucket, Prefix=base.key):
            keys: list[Any] = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=base.bucket, Delete={"Objects": keys})

    # -- job level -------------------------------------------------------------------

    def job_uris(self, key: str) -> tuple[str, str]:
        """(manifest, report) URIs of one job. Reports have a prefix of their own, so one
        listing shows which jobs of the run have ended (reports.py)."""
        return f"{self.run_prefix}/jobs/{key}/manifest.json", f"{self.reports_dir}/{key}.json"

    @property
    def reports_dir(self) -> str:
        return f"{self.run_prefix}/reports"

    def job_inputs(self, per_job: Sequence[Iterable[str]]) -> list[list[InputEntry]]:
        """Each job's input entries, sources first; what S3 lacks is staged in one batch.

        In storage mode only the sources: Snakemake's storage moves the inputs."""
        if not self.staged:
            return [list(self.sources) for _ in per_job]
        known = {e.path for e in self.sources}
        relative = [
            [p for p in dict.fromkeys(self._relative(i, "input") for i in inputs) if p not in known]
            for inputs in per_job
        ]
        wanted = list(dict.fromkeys(p for paths in relative for p in paths))
        entries = dict(zip(wanted, self._upload(wanted), strict=True))
        return [list(self.sources) + [entries[p] for p in paths] for paths in relative]

    def manifest(
        self,
        key: str,
        command: str,
        inputs: list[InputEntry],
        products: Iterable[Product],
        record: dict[str, str],
        directories: Sequence[StorageDirectory] = (),
        nodes: NodeGroup | None = None,
        plan: Sequence[dict[str, Any]] = (),
        names: Sequence[DirectoryNames] = (),
    ) -> Manifest:
        """A job's manifest (nothing written yet); remembers its temp() outputs."""
        report_uri = self.job_uris(key)[1]
        outputs: list[OutputEntry] = []
        if self.staged:
            for product in products:
                path = self._relative(product.path, product.kind)
                uri = self.mirror_uri(path)
                outputs.append(OutputEntry(path, uri, product.is_dir, product.kind))
                if product.temp:
                    with self._lock:
                        self._pending_temp.setdefault(key, {})[path] = uri
        return Manifest(
            run_id=self.run_id,
            jobname=key,
            command=command,
            report_uri=report_uri,
            inputs=inputs,
            outputs=outputs,
            directories=list(directories),
            input_cache=self.input_cache,
            record=record,
            nodes=nodes,
            plan=list(plan),
            names=list(names),
        )

    def pack_uri(self, array_name: str) -> str:
        """Where an array job's pack of manifests is (jobside/manifest.py)."""
        return f"{self.run_prefix}/jobs/{array_name}/{PACK_NAME}"

    def put_records(self, records: Sequence[tuple[str, bytes]]) -> None:
        """Write (URI, body) records in parallel: many jobs start at once."""

        def put(record: tuple[str, bytes]) -> None:
            target = S3Uri.parse(record[0])
            self.client.put_object(Bucket=target.bucket, Key=target.key, Body=record[1])

        list(self._pool.map(put, records))

    def read_report(self, report_uri: str) -> Report | None:
        """The runner's report for a job, or None when the runner never wrote one.

        Other S3 errors propagate: a report that could not be read is not a missing one."""
        uri = S3Uri.parse(report_uri)
        try:
            body = self.client.get_object(Bucket=uri.bucket, Key=uri.key)["Body"].read()
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        return Report.from_json(body)

    def list_reports(self, directories: Iterable[str]) -> dict[str, str]:
        """URI -> ETag of every report below these directories (one listing each)."""
        found: dict[str, str] = {}
        for directory in sorted(set(directories)):
            base = S3Uri.parse(directory + "/")
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=base.bucket, Prefix=base.key
            ):
                for item in page.get("Contents", []):
                    found[f"s3://{base.bucket}/{item['Key']}"] = item["ETag"]
        return found

    def forget(self, uris: Iterable[str]) -> None:
        """Delete the records of finished jobs (manifests, reports), many per request, so
        the listing of reports stays short and a crash leaves only unfinished jobs."""
        by_bucket: dict[str, list[str]] = {}
        for uri in uris:
            s3 = S3Uri.parse(uri)
            by_bucket.setdefault(s3.bucket, []).append(s3.key)
        for bucket, keys in by_bucket.items():
            for start in range(0, len(keys), 1000):
                objects: list[Any] = [{"Key": k} for k in keys[start : start + 1000]]
                self.client.delete_objects(Bucket=bucket, Delete={"Objects": objects})

    def fetch_products(self, report: Report, kinds: tuple[str, ...]) -> None:
        """Download what the job wrote, verified, into the working directory."""
        if not self.staged:
            return
        items = report.download_items(self.workdir, kinds)
        try:
            fetched = download_files(items, client=self.client, hash_cache=self.hashes)
        except TransferError as e:
            raise StagingError(f"Fetching the outputs of job {report.jobname} failed: {e}") from e
        with self._lock:
            self.traffic.fetched_files += fetched.files
            self.traffic.fetched_bytes += fetched.transferred_bytes
            for written in report.written:
                if written.kind == "output" and not written.is_dir:
                    entry = InputEntry(written.path, written.uri, written.sha256, written.size)
                    self._remember_in_s3(entry)
        if "output" in kinds:
            with self._lock:
                self._temp_uris.update(self._pending_temp.pop(report.jobname, {}))

    def forget_deleted_temp_outputs(self) -> None:
        """Delete the S3 copies of temp() outputs once Snakemake removed the local ones."""
        with self._lock:
            gone = {p: u for p, u in self._temp_uris.items() if not (self.workdir / p).exists()}
            for path in gone:
                del self._temp_uris[path]
        for uri in gone.values():
            s3 = S3Uri.parse(uri)
            self.client.delete_object(Bucket=s3.bucket, Key=s3.key)

    # -- helpers ---------------------------------------------------------------------

    def _relative(self, path: str, what: str) -> str:
        relative = os.path.relpath(os.path.abspath(path), self.workdir)
        try:
            return checked_relpath(Path(relative).as_posix())
        except ValueError:
            raise StagingError(
                f"The {what} {path} lies outside the working directory {self.workdir}; jobs "
                "only see files below it. Run Snakemake from a directory that contains the "
                "workflow and its files (or use -d)."
            ) from None

    def _upload(self, paths: list[str]) -> list[InputEntry]:
        """Entries for `paths`, uploading those S3 may not hold as they are now."""
        missing = [p for p in paths if not (self.workdir / p).exists()]
        if missing:
            raise StagingError(f"Cannot stage {', '.join(missing)}: no such file")
        with self._lock:
            known = {p: e for p in paths if (e := self._known_in_s3(p)) is not None}
            self.traffic.unchanged_files += len(known)
        rest = [p for p in paths if p not in known]
        if not rest:  # spares thread pools on the scheduler's path, once per job
            return [known[p] for p in paths]
        items = [
            UploadItem(self.workdir / p, self.mirror_uri(p), (self.workdir / p).is_dir())
            for p in rest
        ]
        try:
            stats = upload_files(items, client=self.client, hash_cache=self.hashes)
        except TransferError as e:
            raise StagingError(f"Uploading to {self.location.uri()} failed: {e}") from e
        with self._lock:
            self.traffic.count_uploads(stats.results)
            for p, item, r in zip(rest, items, stats.results, strict=True):
                known[p] = InputEntry(p, item.uri, r.sha256, r.size, item.is_dir)
                if not item.is_dir:
                    self._remember_in_s3(known[p])
        return [known[p] for p in paths]

    def _known_in_s3(self, path: str) -> InputEntry | None:
        """The entry of a file staged or fetched in this run, if it has not changed since."""
        seen = self._in_s3.get(path)
        try:
            unchanged = seen is not None and FileStamp.of(self.workdir / path) == seen[0]
        except OSError:
            unchanged = False
        return seen[1] if unchanged and seen is not None else None

    def _remember_in_s3(self, entry: InputEntry) -> None:
        try:
            self._in_s3[entry.path] = (FileStamp.of(self.workdir / entry.path), entry)
        except OSError:
            self._in_s3.pop(entry.path, None)
