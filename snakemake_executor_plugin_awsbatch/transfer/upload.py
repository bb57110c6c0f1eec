"""Upload files and directories to S3, each verified by SHA-256 and skipped when S3 has it.

Small files (up to the multipart threshold) are read into memory once, hashed, and sent
from that buffer, so the object is exactly the bytes that were hashed. Large files are sent
multipart while a thread hashes them (or with the digest from the hash cache); a stat
before and after detects a file that changed meanwhile, and the object is then deleted
rather than left with a digest that may not match it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from s3transfer.manager import TransferManager

from . import objects
from .client import DEFAULT_TUNING, S3Client, Tuning, make_s3_client
from .dirs import LISTING_NAME, ListedFile, Listing, scan
from .errors import ChangedDuringUploadError, MissingFileError, TransferError, TransferFailedError
from .hashing import Digests, FileStamp, HashCache, digests_of, sha256_bytes, sha256_file
from .items import FileResult, TransferStats, UploadItem
from .known import ABSENT, KnownObjects
from .objects import Listed
from .pool import Workers
from .uri import S3Uri


def upload_files(
    items: Iterable[UploadItem],
    *,
    client: S3Client | None = None,
    tuning: Tuning = DEFAULT_TUNING,
    hash_cache: HashCache | None = None,
) -> TransferStats:
    """Upload every item in parallel; raise TransferFailedError naming each item that failed."""
    start = time.monotonic()
    client = client or make_s3_client(tuning)
    uploader = _Uploader(client, tuning, hash_cache or HashCache(None))
    plans = [_plan(item) for item in items]
    results: list[FileResult] = []
    errors: list[BaseException] = []
    with Workers(client, tuning, download=False) as workers:
        uploader.manager = workers.manager
        calls = [f for plan in plans for f in plan.files]
        uploader.known = KnownObjects.gather(client, [s3 for _, s3 in calls], workers.run_all)
        outcomes = iter(workers.run_all(uploader.upload_file, calls))
        for plan in plans:
            done = [next(outcomes) for _ in plan.files]
            failed = [o for o in done if isinstance(o, BaseException)]
            if plan.error or failed:
                errors.extend([plan.error] if plan.error else [_named(e, plan) for e in failed])
            elif plan.item.is_dir:
                results.append(uploader.finish_directory(plan, done))
            else:
                results.append(done[0])
    if errors:
        raise TransferFailedError(errors, results)
    return TransferStats(results, time.monotonic() - start)


@dataclass
class _Plan:
    """One item broken into the (path, object) pairs to upload."""

    item: UploadItem
    files: list[tuple[Path, S3Uri]] = field(default_factory=list)
    rel_files: list[str] = field(default_factory=list)
    rel_dirs: list[str] = field(default_factory=list)
    error: TransferError | None = None


def _plan(item: UploadItem) -> _Plan:
    plan = _Plan(item)
    path, s3 = Path(item.path), S3Uri.parse(item.uri)
    if item.is_dir and not path.is_dir():
        plan.error = MissingFileError(f"{path}: directory to upload does not exist")
    elif not item.is_dir and path.is_dir():
        plan.error = TransferError(f"{path}: is a directory, expected a file")
    elif not item.is_dir:
        plan.files = [(path, s3)]
    else:
        try:
            plan.rel_files, plan.rel_dirs = scan(path)
        except (OSError, ValueError) as e:
            plan.error = TransferError(f"{path}: cannot list directory: {e}")
        plan.files = [(path / rel, s3.child(rel)) for rel in plan.rel_files]
    return plan


def _named(err: BaseException, plan: _Plan) -> BaseException:
    if isinstance(err, TransferError):
        return err
    return TransferError(f"{plan.item.path} -> {plan.item.uri}: {err}")


class _Uploader:
    def __init__(self, client: S3Client, tuning: Tuning, cache: HashCache) -> None:
        self.client = client
        self.tuning = tuning
        self.cache = cache
        self.manager: TransferManager | None = None
        self.known = KnownObjects()

    def upload_file(self, path: Path, s3: S3Uri) -> FileResult:
        start = time.monotonic()
        try:
            before = FileStamp.of(path)
        except FileNotFoundError:
            raise MissingFileError(f"{path}: file to upload does not exist") from None
        try:
            if before.size <= self.tuning.multipart_threshold:
                digest, skipped = self._upload_small(path, s3, before)
            else:
                digest, skipped = self._upload_large(path, s3, before)
        except TransferError:
            raise
        except Exception as e:
            raise TransferError(f"{path} -> {s3}: upload failed: {e}") from e
        return FileResult(
            str(path),
            str(s3),
            before.size,
            digest,
            time.monotonic() - start,
            skipped=skipped,
            transferred=0 if skipped else before.size,
        )

    def _upload_small(self, path: Path, s3: S3Uri, before: FileStamp) -> tuple[str, bool]:
        """(sha256, skipped) for a file sent in one request from one read."""
        data = None
        digests = self.cache.lookup(path, before)
        if digests is None or digests.md5 is None:
            data = _read_unchanged(path, before, s3)
            digests = digests_of(data)
            self.cache.remember(path, before, digests)
        if self._already_there(s3, digests, before.size):
            _check_unchanged(path, before, s3)
            return digests.sha256, True
        if data is None:
            data = _read_unchanged(path, before, s3)
            if sha256_bytes(data) != digests.sha256:
                raise _changed(path, s3)
        objects.put_bytes(self.client, s3, data, digests.sha256)
        # The object matches its digest, but the caller would stage a file that is no
        # longer what was uploaded.
        _check_unchanged(path, before, s3)
        return digests.sha256, False

    def _upload_large(self, path: Path, s3: S3Uri, before: FileStamp) -> tuple[str, bool]:
        """(digest, skipped) for a file sent multipart straight from disk.

        Unless S3 may hold the file already (an object of its size under the key), a file
        whose digest is not cached is hashed while it uploads, and the digest is tagged on
        afterwards: hashing first would read the whole file once more before the first
        byte is sent (about 0.7 s per GiB).
        """
        cached = self.cache.lookup(path, before)
        if self._size_in_s3(s3) != before.size:
            if cached is None:
                return self._send_hashing(path, s3, before), False
            self._send(path, s3, before, {"Metadata": {objects.SHA256_META: cached.sha256}})
            return cached.sha256, False
        digest = cached.sha256 if cached else self.cache.digest(path, before)
        if objects.has_content(self.client, s3, digest, before.size, tags=True):
            _check_unchanged(path, before, s3)
            return digest, True
        self._send(path, s3, before, {"Metadata": {objects.SHA256_META: digest}})
        return digest, False

    def _send_hashing(self, path: Path, s3: S3Uri, before: FileStamp) -> str:
        hashing = _hash_in_background(path)
        self._send(path, s3, before, {})
        digest = hashing.result()
        # The stamp is checked again: the digest must describe what was sent.
        if FileStamp.of(path) != before:
            self.client.delete_object(Bucket=s3.bucket, Key=s3.key)
            raise _changed(path, s3)
        objects.tag_sha256(self.client, s3, digest)
        self.cache.remember(path, before, Digests(digest))
        return digest

    def _send(self, path: Path, s3: S3Uri, before: FileStamp, extra: dict) -> None:
        assert self.manager is not None
        self.manager.upload(str(path), s3.bucket, s3.key, extra_args=extra).result()
        if FileStamp.of(path) != before:
            # The object may hold bytes other than the recorded digest says: do not keep it.
            self.client.delete_object(Bucket=s3.bucket, Key=s3.key)
            raise _changed(path, s3)

    def _size_in_s3(self, s3: S3Uri) -> int | None:
        """The size of the object under this key, None when there is none."""
        known = self.known.get(s3)
        if known == ABSENT:
            return None
        if isinstance(known, Listed):
            return known.size
        info = objects.head(self.client, s3)
        return info.size if info is not None else None

    def _already_there(self, s3: S3Uri, digests: Digests, size: int) -> bool:
        """Whether S3 holds exactly these bytes under this key: from a LIST if it can tell
        (absent, other size, or an ETag equal to the MD5), else from a HEAD."""
        known = self.known.get(s3)
        if known == ABSENT:
            return False
        if isinstance(known, Listed):
            if known.size != size:
                return False
            if digests.md5 is not None and known.etag == digests.md5:
                return True
        return objects.has_content(self.client, s3, digests.sha256, size)

    def finish_directory(self, plan: _Plan, done: list[FileResult]) -> FileResult:
        """Write the directory's listing last: only then does the directory exist in S3."""
        start = time.monotonic()
        files = [
            ListedFile(rel, r.size, r.sha256) for rel, r in zip(plan.rel_files, done, strict=True)
        ]
        listing = Listing(files, plan.rel_dirs)
        raw = listing.to_bytes()
        digest = sha256_bytes(raw)
        s3 = S3Uri.parse(plan.item.uri).child(LISTING_NAME)
        listing_skipped = objects.has_content(self.client, s3, digest, len(raw))
        if not listing_skipped:
            objects.put_bytes(self.client, s3, raw, digest)
        return FileResult(
            str(plan.item.path),
            plan.item.uri,
            listing.size,
            digest,
            time.monotonic() - start + sum(r.seconds for r in done),
            skipped=listing_skipped and all(r.skipped for r in done),
            is_dir=True,
            files=len(files),
            transferred=sum(r.transferred for r in done),
        )


def _hash_in_background(path: Path) -> Future[str]:
    """SHA-256 of the file, computed in a thread of its own (hashlib releases the GIL)."""
    future: Future[str] = Future()

    def run() -> None:
        try:
            future.set_result(sha256_file(path))
        except BaseException as e:
            future.set_exception(e)

    threading.Thread(target=run, name="s3-hash", daemon=True).start()
    return future


def _read_unchanged(path: Path, before: FileStamp, s3: S3Uri) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    if len(data) != before.size:
        raise _changed(path, s3)
    _check_unchanged(path, before, s3)
    return data


def _check_unchanged(path: Path, before: FileStamp, s3: S3Uri) -> None:
    try:
        unchanged = FileStamp.of(path) == before
    except FileNotFoundError:
        unchanged = False
    if not unchanged:
        raise _changed(path, s3)


def _changed(path: Path, s3: S3Uri) -> ChangedDuringUploadError:
    return ChangedDuringUploadError(
        f"{path}: changed while it was being uploaded to {s3} (size, time or content "
        "differ before and after); retry once the file is complete"
    )
