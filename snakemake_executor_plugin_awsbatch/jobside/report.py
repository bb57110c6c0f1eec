"""The runner's report: what happened to one job attempt, as JSON at the manifest's report_uri.

The submitting side reads it to learn the outcome and to fetch the outputs, verified
against the checksums recorded here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..transfer.items import DownloadItem

REPORT_VERSION = 1
SUCCEEDED, FAILED, TERMINATED = "succeeded", "failed", "terminated"


@dataclass(frozen=True)
class WrittenFile:
    """One manifest output the runner uploaded (path relative to the working directory)."""

    path: str
    uri: str
    kind: str
    is_dir: bool
    size: int
    sha256: str  # for a directory: of its listing
    files: int
    seconds: float
    skipped: bool  # S3 already held this content

    def download_item(self, workdir: Path) -> DownloadItem:
        return DownloadItem(
            uri=self.uri,
            path=workdir / self.path,
            sha256=self.sha256,
            size=None if self.is_dir else self.size,
            is_dir=self.is_dir,
        )


@dataclass
class Report:
    run_id: str
    jobname: str
    status: str = FAILED  # succeeded | failed | terminated
    exit_code: int | None = None  # the runner's exit code
    command_exit_code: int | None = None  # None: the command did not run or did not end
    error: str | None = None  # one line per problem, for the user
    batch_job_id: str | None = None
    attempt: str | None = None
    hostname: str = ""
    scratch_dir: str = ""
    started_at: float = 0.0  # epoch seconds
    finished_at: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase
    inputs: dict[str, float] = field(default_factory=dict)  # files, bytes, seconds
    # What the instance's input cache did: hits, misses, bytes of each (jobside/fetch.py).
    input_cache: dict[str, int] = field(default_factory=dict)
    written: list[WrittenFile] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # declared paths the command did not create
    version: int = REPORT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> Report:
        data = json.loads(text)
        if data.get("version") != REPORT_VERSION:
            raise ValueError(f"report version {data.get('version')!r} is not supported")
        data["written"] = [WrittenFile(**w) for w in data.get("written", [])]
        return cls(**data)

    def download_items(
        self, workdir: Path, kinds: tuple[str, ...] = ("output", "log", "benchmark")
    ) -> list[DownloadItem]:
        """What the submitting side fetches into its working directory after the job."""
        return [w.download_item(workdir) for w in self.written if w.kind in kinds]
