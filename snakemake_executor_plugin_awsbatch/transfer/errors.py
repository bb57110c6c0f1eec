"""The transfer layer's errors: one class per failure a user can act on, each a one-line message."""

from __future__ import annotations


class TransferError(Exception):
    """Base class: a file or object could not be transferred correctly."""


class MissingFileError(TransferError):
    """A local file or directory that should be uploaded does not exist."""


class MissingObjectError(TransferError):
    """An S3 object that should be downloaded does not exist."""


class ChangedDuringUploadError(TransferError):
    """A local file changed between hashing and the end of its upload."""


class ChecksumMismatchError(TransferError):
    """Downloaded or uploaded bytes do not have the SHA-256 that was recorded for them."""


class TransferFailedError(TransferError):
    """Some items of a batch failed: `errors` has one error per failed item, `results` the
    FileResults of the items that did succeed."""

    def __init__(self, errors: list[BaseException], results: list | None = None) -> None:
        self.errors = errors
        self.results = results or []
        shown = "\n  ".join(str(e) for e in errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        super().__init__(f"{len(errors)} transfer(s) failed:\n  {shown}{more}")
