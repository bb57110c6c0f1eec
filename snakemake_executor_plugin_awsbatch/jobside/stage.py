"""Turn the manifest's inputs and outputs into transfer items below the job's working dir."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..transfer.items import DownloadItem, FileResult, UploadItem
from .manifest import Manifest, OutputEntry
from .report import WrittenFile


def input_items(manifest: Manifest, workdir: Path) -> list[DownloadItem]:
    return [
        DownloadItem(
            uri=e.uri,
            path=workdir / e.path,
            sha256=e.sha256 or None,
            size=None if e.is_dir else e.size,
            is_dir=e.is_dir,
        )
        for e in manifest.inputs
    ]


@dataclass
class OutputPlan:
    entries: list[OutputEntry] = field(default_factory=list)  # to upload, in this order
    missing_outputs: list[str] = field(default_factory=list)  # kind "output": a failure
    missing_other: list[str] = field(default_factory=list)  # logs, benchmarks: noted only

    def items(self, workdir: Path) -> list[UploadItem]:
        return [UploadItem(workdir / e.path, e.uri, e.is_dir) for e in self.entries]


def plan_outputs(manifest: Manifest, workdir: Path, command_ok: bool) -> OutputPlan:
    """Logs and benchmarks always go up; outputs only if the command succeeded and all exist.

    Uploading none of the outputs when one is missing keeps a failed job from replacing
    complete results in S3 with part of a new set.
    """
    plan = OutputPlan()
    outputs = []
    for entry in manifest.outputs:
        path = workdir / entry.path
        present = path.is_dir() if entry.is_dir else path.exists()
        if entry.kind != "output" and present:
            plan.entries.append(entry)
        elif entry.kind != "output":
            plan.missing_other.append(entry.path)
        elif not present:
            plan.missing_outputs.append(entry.path)
        else:
            outputs.append(entry)
    if command_ok and not plan.missing_outputs:
        plan.entries.extend(outputs)
    return plan


def written_files(entries: list[OutputEntry], results: list[FileResult]) -> list[WrittenFile]:
    """Report entries for uploaded outputs (results are matched by their S3 URI)."""
    by_uri = {r.uri: r for r in results}
    written = []
    for e in entries:
        r = by_uri.get(e.uri)
        if r is not None:
            written.append(
                WrittenFile(
                    path=e.path,
                    uri=e.uri,
                    kind=e.kind,
                    is_dir=e.is_dir,
                    size=r.size,
                    sha256=r.sha256,
                    files=r.files,
                    seconds=round(r.seconds, 6),
                    skipped=r.skipped,
                )
            )
    return written
