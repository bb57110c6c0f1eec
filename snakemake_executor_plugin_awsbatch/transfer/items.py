"""What callers ask the transfer layer to move, and what it reports back."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class UploadItem:
    """Upload local `path` (a file, or a directory when `is_dir`) to the S3 URI `uri`."""

    path: Path | str
    uri: str
    is_dir: bool = False


@dataclass(frozen=True)
class DownloadItem:
    """Download `uri` to local `path`, verifying `sha256` (for a directory: of its listing).

    `sha256=None` verifies against the object's own recorded digest, when it has one.
    `size` (bytes) saves a HEAD request when known; ignored for directories.
    """

    uri: str
    path: Path | str
    sha256: str | None = None
    size: int | None = None
    is_dir: bool = False


@dataclass(frozen=True)
class FileResult:
    """One item's outcome. For a directory: size is the sum, sha256 that of its listing."""

    path: str
    uri: str
    size: int
    sha256: str
    seconds: float
    skipped: bool = False  # upload only: S3 already had all of this content
    is_dir: bool = False
    files: int = 1
    transferred: int = 0  # bytes actually sent or received

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "uri": self.uri,
            "size": self.size,
            "sha256": self.sha256,
            "seconds": round(self.seconds, 6),
            "skipped": self.skipped,
            "is_dir": self.is_dir,
            "files": self.files,
            "transferred": self.transferred,
        }


@dataclass
class TransferStats:
    """The results of one batch, in the order of the items asked for."""

    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def files(self) -> int:
        return sum(r.files for r in self.results)

    @property
    def bytes(self) -> int:
        return sum(r.size for r in self.results)

    @property
    def skipped(self) -> int:
        return sum(1 for r in self.results if r.skipped)

    @property
    def transferred_bytes(self) -> int:
        return sum(r.transferred for r in self.results)
