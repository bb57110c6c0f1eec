"""Download objects and directories from S3, each verified by SHA-256 before it appears.

Every file is written to a temporary name in its destination directory, verified, then
renamed over the destination, so a reader never sees a partial or unverified file and a
failed download leaves any earlier file in place. A directory is assembled in a
temporary sibling directory and swapped in whole.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from s3transfer.manager import TransferManager
from s3transfer.subscribers import BaseSubscriber

from . import objects
from .client import DEFAULT_TUNING, MiB, S3Client, Tuning, make_s3_client
from .dirs import LISTING_NAME, Listing
from .errors import ChecksumMismatchError, MissingObjectError, TransferError, TransferFailedError
from .hashing import Digests, FileStamp, HashCache, sha256_bytes, sha256_file
from .items import DownloadItem, FileResult, TransferStats
from .pool import Workers
from .uri import S3Uri

# Errors in the middle of a response body, which botocore's request retries do not cover.
_STREAM_RETRIES = 3


def download_files(
    items: Iterable[DownloadItem],
    *,
    client: S3Client | None = None,
    tuning: Tuning = DEFAULT_TUNING,
    hash_cache: HashCache | None = None,
) -> TransferStats:
    """Download every item in parallel; raise TransferFailedError naming each item that failed."""
    start = time.monotonic()
    client = client or make_s3_client(tuning)
    downloader = _Downloader(client, tuning, hash_cache)
    plans = [_Plan(item) for item in items]
    results: list[FileResult] = []
    errors: list[BaseException] = []
    with Workers(client, tuning, download=True) as workers:
        downloader.manager = workers.manager
        dir_plans = [p for p in plans if p.item.is_dir]
        listed = workers.run_all(downloader.plan_directory, [(p,) for p in dir_plans])
        for plan, outcome in zip(dir_plans, listed, strict=True):
            if isinstance(outcome, BaseException):
                plan.error = outcome
        calls = [f for plan in plans if not plan.error for f in plan.files]
        outcomes = iter(workers.run_all(downloader.download_file, calls))
        for plan in plans:
            done = [] if plan.error else [next(outcomes) for _ in plan.files]
            failed = [o for o in done if isinstance(o, BaseException)]
            if plan.error or failed:
                errors.extend([plan.error] if plan.error else failed)
                if plan.tmp_dir:
                    shutil.rmtree(plan.tmp_dir, ignore_errors=True)
            elif plan.item.is_dir:
                results.append(_finish_directory(plan, done))
            else:
                results.append(done[0])
    if errors:
        raise TransferFailedError(errors, results)
    return TransferStats(results, time.monotonic() - start)


def read_listing(client: S3Client, base: S3Uri, dest: Path) -> bytes:
    """The raw listing object of the directory at `base` (its digest not yet checked)."""
    s3 = base.child(LISTING_NAME)
    try:
        return bytes(client.get_object(Bucket=s3.bucket, Key=s3.key)["Body"].read())
    except ClientError as e:
        if objects.is_not_found(e):
            raise MissingObjectError(
                f"{dest}: {base} is not a complete directory (no {LISTING_NAME})"
            ) from None
        raise TransferError(f"{dest}: cannot read {s3}: {e}") from e


@dataclass
class _Plan:
    """One item broken into the files to download."""

    item: DownloadItem
    # (object, destination, sha256, size, whether to cache the digest under destination)
    files: list[tuple[S3Uri, Path, str | None, int | None, bool]] = field(default_factory=list)
    listing: Listing | None = None
    listing_sha256: str = ""
    listing_started: float = 0.0
    tmp_dir: Path | None = None
    error: BaseException | None = None

    def __post_init__(self) -> None:
        if not self.item.is_dir:
            s3 = S3Uri.parse(self.item.uri)
            self.files = [(s3, Path(self.item.path), self.item.sha256, self.item.size, True)]


class _Downloader:
    def __init__(self, client: S3Client, tuning: Tuning, cache: HashCache | None) -> None:
        self.client = client
        self.tuning = tuning
        self.cache = cache
        self.manager: TransferManager | None = None

    def plan_directory(self, plan: _Plan) -> None:
        """Fetch and verify a directory's listing; plan its files into a temporary sibling."""
        plan.listing_started = time.monotonic()
        base = S3Uri.parse(plan.item.uri)
        dest = Path(plan.item.path)
        raw = read_listing(self.client, base, dest)
        plan.listing_sha256 = sha256_bytes(raw)
        _verify(dest, base, plan.listing_sha256, plan.item.sha256, len(raw), len(raw))
        plan.listing = Listing.from_bytes(raw)
        dest.parent.mkdir(parents=True, exist_ok=True)
        plan.tmp_dir = dest.with_name(f".{dest.name}.awsbatch-part-{secrets.token_hex(4)}")
        plan.tmp_dir.mkdir()
        plan.files = [
            (base.child(f.path), plan.tmp_dir / f.path, f.sha256, f.size, False)
            for f in plan.listing.files
        ]

    def download_file(
        self, s3: S3Uri, dest: Path, expected: str | None, size: int | None, cache: bool
    ) -> FileResult:
        start = time.monotonic()
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.awsbatch-part-{secrets.token_hex(4)}")
        try:
            if size is None or size > self.tuning.multipart_threshold:
                info = objects.head(self.client, s3, tags=expected is None)
                if info is None:
                    raise _missing(dest, s3)
                size, expected = info.size, expected or info.sha256
            if size <= self.tuning.multipart_threshold:
                digest, recorded = self._get_small(s3, dest, tmp)
                expected = expected or recorded
            else:
                self._get_large(s3, tmp, size)
                digest = sha256_file(tmp)
            _verify(dest, s3, digest, expected, tmp.stat().st_size, size)
            os.replace(tmp, dest)
        except TransferError:
            raise
        except Exception as e:
            raise TransferError(f"{dest}: download of {s3} failed: {e}") from e
        finally:
            tmp.unlink(missing_ok=True)
        if cache and self.cache is not None:
            self.cache.remember(dest, FileStamp.of(dest), Digests(digest), trusted=True)
        return FileResult(
            str(dest), str(s3), size, digest, time.monotonic() - start, transferred=size
        )

    def _get_small(self, s3: S3Uri, dest: Path, tmp: Path) -> tuple[str, str | None]:
        """One GET streamed to `tmp` while hashing; (digest, digest recorded on the object)."""
        for attempt in range(_STREAM_RETRIES):
            try:
                resp = self.client.get_object(Bucket=s3.bucket, Key=s3.key)
                digest = hashlib.sha256()
                with open(tmp, "wb") as f:
                    for chunk in resp["Body"].iter_chunks(MiB):
                        digest.update(chunk)
                        f.write(chunk)
                return digest.hexdigest(), resp.get("Metadata", {}).get(objects.SHA256_META)
            except ClientError as e:
                if objects.is_not_found(e):
                    raise _missing(dest, s3) from None
                raise
            except Exception:
                # botocore retried the request itself; this covers a body cut off midway.
                if attempt == _STREAM_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def _get_large(self, s3: S3Uri, tmp: Path, size: int) -> None:
        assert self.manager is not None
        future = self.manager.download(s3.bucket, s3.key, str(tmp), subscribers=[_KnownSize(size)])
        future.result()


class _KnownSize(BaseSubscriber):
    """Tells s3transfer the size we already know, which saves it a HEAD request."""

    def __init__(self, size: int) -> None:
        self.size = size

    def on_queued(self, future: Any, **kwargs: Any) -> None:
        future.meta.provide_transfer_size(self.size)


def _verify(
    dest: Path, s3: S3Uri, digest: str, expected: str | None, size: int, expected_size: int
) -> None:
    if (expected is not None and digest != expected) or size != expected_size:
        raise ChecksumMismatchError(
            f"{dest}: checksum mismatch for {s3}: got sha256 {digest} ({size} bytes), "
            f"expected {expected} ({expected_size} bytes); the file was not written"
        )


def _missing(dest: Path, s3: S3Uri) -> MissingObjectError:
    return MissingObjectError(f"{dest}: {s3} does not exist")


def _finish_directory(plan: _Plan, done: list[FileResult]) -> FileResult:
    """Create the listed (possibly empty) subdirectories, then swap the directory in whole."""
    assert plan.listing is not None and plan.tmp_dir is not None
    for rel in plan.listing.dirs:
        (plan.tmp_dir / rel).mkdir(parents=True, exist_ok=True)
    dest = Path(plan.item.path)
    old = dest.with_name(f".{dest.name}.awsbatch-old-{secrets.token_hex(4)}")
    if dest.exists() or dest.is_symlink():
        os.rename(dest, old)
    os.rename(plan.tmp_dir, dest)
    if old.exists() or old.is_symlink():
        _remove(old)
    return FileResult(
        str(dest),
        plan.item.uri,
        plan.listing.size,
        plan.listing_sha256,
        time.monotonic() - plan.listing_started,
        is_dir=True,
        files=len(done),
        transferred=sum(r.transferred for r in done),
    )


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
