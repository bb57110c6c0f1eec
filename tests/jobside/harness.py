"""Build a job's manifest in moto S3 and run the real runner on it as a subprocess."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from snakemake_executor_plugin_awsbatch.jobside.manifest import InputEntry, Manifest, OutputEntry
from snakemake_executor_plugin_awsbatch.jobside.report import Report
from snakemake_executor_plugin_awsbatch.transfer import UploadItem, upload_files

RUNNER = [sys.executable, "-m", "snakemake_executor_plugin_awsbatch.jobside"]


@dataclass
class Job:
    """One job: local inputs staged like the submitting side does, and declared outputs."""

    bucket: str
    tmp: Path
    command: str
    inputs: dict[str, Path] = field(default_factory=dict)  # relative path -> local file
    input_dirs: dict[str, Path] = field(default_factory=dict)
    outputs: list[tuple[str, str, bool]] = field(default_factory=list)  # (path, kind, is_dir)
    name: str = "job1"

    @property
    def scratch_root(self) -> Path:
        return self.tmp / "scratch"

    def uri(self, rel: str) -> str:
        return f"s3://{self.bucket}/files/{rel}"

    def manifest(self) -> Manifest:
        items = [UploadItem(p, self.uri(r)) for r, p in self.inputs.items()]
        items += [UploadItem(p, self.uri(r), is_dir=True) for r, p in self.input_dirs.items()]
        staged = upload_files(items).results
        rels = list(self.inputs) + list(self.input_dirs)
        return Manifest(
            run_id="run-1",
            jobname=self.name,
            command=self.command,
            report_uri=f"s3://{self.bucket}/runs/run-1/{self.name}/report.json",
            inputs=[
                InputEntry(rel, r.uri, r.sha256, r.size, r.is_dir)
                for rel, r in zip(rels, staged, strict=True)
            ],
            outputs=[OutputEntry(p, self.uri(p), d, k) for p, k, d in self.outputs],
            env={"JOB_MARKER": "from-manifest"},
        )

    def put_manifest(self, manifest: Manifest | None = None) -> str:
        manifest = manifest or self.manifest()
        key = f"runs/run-1/{self.name}/manifest.json"
        boto3.client("s3").put_object(Bucket=self.bucket, Key=key, Body=manifest.to_json())
        return f"s3://{self.bucket}/{key}"

    def start(
        self, manifest_uri: str, extra: list[str] | None = None, **kwargs: Any
    ) -> subprocess.Popen[str]:
        self.scratch_root.mkdir(exist_ok=True)
        return subprocess.Popen(
            [*RUNNER, manifest_uri, *(extra or []), "--scratch-root", str(self.scratch_root)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **kwargs,
        )

    def run(self, manifest: Manifest | None = None) -> subprocess.CompletedProcess[str]:
        proc = self.start(self.put_manifest(manifest))
        out, err = proc.communicate(timeout=120)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def report(self) -> Report:
        key = f"runs/run-1/{self.name}/report.json"
        body = boto3.client("s3").get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return Report.from_json(body)

    def object(self, rel: str) -> bytes:
        key = f"files/{rel}"
        return bytes(boto3.client("s3").get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def exists(self, rel: str) -> bool:
        listing = boto3.client("s3").list_objects_v2(Bucket=self.bucket, Prefix=f"files/{rel}")
        return "Contents" in listing
