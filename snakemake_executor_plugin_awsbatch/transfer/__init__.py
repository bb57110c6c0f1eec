"""A small S3 transfer layer: parallel, SHA-256-verified uploads and downloads.

Used by the submitting side (staging sources and inputs, fetching outputs) and by the
job runner inside the container. See docs/staging.md.
"""

from .client import DEFAULT_TUNING, S3Client, Tuning, make_s3_client
from .dirs import LISTING_NAME
from .download import download_files
from .errors import (
    ChangedDuringUploadError,
    ChecksumMismatchError,
    MissingFileError,
    MissingObjectError,
    TransferError,
    TransferFailedError,
)
from .hashing import FileStamp, HashCache, sha256_bytes, sha256_file
from .items import DownloadItem, FileResult, TransferStats, UploadItem
from .objects import SHA256_META
from .upload import upload_files
from .uri import S3Uri

__all__ = [
    "DEFAULT_TUNING",
    "LISTING_NAME",
    "SHA256_META",
    "ChangedDuringUploadError",
    "ChecksumMismatchError",
    "DownloadItem",
    "FileResult",
    "FileStamp",
    "HashCache",
    "MissingFileError",
    "MissingObjectError",
    "S3Client",
    "S3Uri",
    "TransferError",
    "TransferFailedError",
    "TransferStats",
    "Tuning",
    "UploadItem",
    "download_files",
    "make_s3_client",
    "sha256_bytes",
    "sha256_file",
    "upload_files",
]
