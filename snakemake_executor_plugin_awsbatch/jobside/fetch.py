"""A job's inputs into its scratch directory: straight from S3, or through the instance's cache.

A file goes through the cache (cache.py) when the cache is on, its size is between
MIN_SIZE and the cache's bound, and its identity is known: the SHA-256 the manifest gives
(or, for a file of a `directory()`, its listing), else the digest recorded on the object,
else the object's (URI, ETag, size). Everything else is downloaded straight into scratch,
as without the cache. Every download, into the cache or not, goes through the verified
transfer layer (temporary name, SHA-256 and size checked, rename).

The cached files go in three steps, so that no job ever waits for a lock while it holds
another (no deadlock between jobs):

1. each entry whose lock is free is taken: a valid entry is linked at once (a hit), a
   missing one stays locked for this job to download (a miss);
2. one batch downloads the straight files and this job's misses (into the cache), in
   parallel; each miss is then sealed, linked and unlocked;
3. the entries another job held in step 1 are waited for, one at a time: that job was
   usually downloading them, so they are hits now; if it failed, this job downloads them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from ..transfer import (
    LISTING_NAME,
    SHA256_META,
    ChecksumMismatchError,
    DownloadItem,
    FileResult,
    S3Client,
    S3Uri,
    TransferError,
    TransferFailedError,
    download_files,
    objects,
    sha256_bytes,
)
from ..transfer.dirs import Listing
from ..transfer.download import read_listing
from .cache import CHANGED, MIN_SIZE, VALID, EntryLock, InputCache, Key
from .log import log
from .manifest import InputEntry, Manifest
from .stage import input_items

MB = 1_000_000
_HEX64 = frozenset("0123456789abcdef")


@dataclass
class CacheStats:
    """What the cache did for one job (the report's `input_cache`); counts are files."""

    enabled: bool = False
    bound: int = 0  # bytes, on this instance
    hits: int = 0  # placed from the cache: nothing downloaded
    hit_bytes: int = 0
    misses: int = 0  # downloaded into the cache by this job, then placed
    miss_bytes: int = 0
    uncached: int = 0  # downloaded straight into scratch
    uncached_bytes: int = 0
    copied: int = 0  # of the hits and misses: copied, as a hard link was refused
    waited: int = 0  # entries another job was busy with when this one wanted them
    changed: int = 0  # entries found changed since they were cached: downloaded again
    evicted: int = 0  # entries this job evicted to keep the cache within its bound
    evicted_bytes: int = 0

    def to_dict(self) -> dict[str, int]:
        return {name: int(value) for name, value in asdict(self).items()}

    def summary(self) -> str:
        """The runner's log line."""
        if not self.enabled:
            return f"input cache: off; {_count(self.uncached, self.uncached_bytes)} downloaded"
        hits = "hit" if self.hits == 1 else "hits"
        line = (
            f"input cache: {self.hits} {hits} ({self.hit_bytes / MB:.1f} MB linked), "
            f"{_count(self.misses, self.miss_bytes)} downloaded into the cache, "
            f"{_count(self.uncached, self.uncached_bytes)} not cached"
        )
        if self.copied:
            line += f"; {self.copied} copied instead of linked"
        if self.changed:
            line += f"; {self.changed} found changed in the cache and downloaded again"
        if self.evicted:
            line += f"; evicted {_count(self.evicted, self.evicted_bytes)}"
        return line


def _count(files: int, size: int) -> str:
    return f"{files} {'file' if files == 1 else 'files'} ({size / MB:.1f} MB)"


@dataclass
class Fetched:
    files: int
    bytes: int
    cache: CacheStats


@dataclass(frozen=True)
class _File:
    """One file for the cache: from `uri` to `dest`, checked against sha256 (if known) and size."""

    uri: str
    dest: Path
    sha256: str | None
    size: int


@dataclass
class _Plan:
    by_key: dict[Key, list[_File]] = field(default_factory=dict)  # equal content, one entry
    straight: list[DownloadItem] = field(default_factory=list)


def fetch_inputs(
    client: S3Client, manifest: Manifest, workdir: Path, cache: InputCache | None
) -> Fetched:
    """Every input of the manifest below `workdir`, verified; TransferFailedError if one fails."""
    if cache is None:
        done = download_files(input_items(manifest, workdir), client=client)
        off = CacheStats(uncached=done.files, uncached_bytes=done.bytes)
        return Fetched(done.files, done.bytes, off)
    stats = CacheStats(enabled=True, bound=cache.bound)
    _Through(client, cache, stats).run(_plan(client, cache, manifest, workdir))
    _evict(cache, stats)
    files = stats.hits + stats.misses + stats.uncached
    return Fetched(files, stats.hit_bytes + stats.miss_bytes + stats.uncached_bytes, stats)


# -- which files go through the cache, under which key ---------------------------------


def _plan(client: S3Client, cache: InputCache, manifest: Manifest, workdir: Path) -> _Plan:
    plan = _Plan()
    errors: list[BaseException] = []
    for entry, item in zip(manifest.inputs, input_items(manifest, workdir), strict=True):
        if not entry.is_dir:
            _add(client, cache, plan, _File(entry.uri, Path(item.path), item.sha256, entry.size))
        elif entry.size < MIN_SIZE:  # none of its files is worth caching
            plan.straight.append(item)
        else:
            try:
                for file in _directory_files(client, entry, Path(item.path)):
                    _add(client, cache, plan, file)
            except TransferError as e:
                errors.append(e)
    if errors:
        raise TransferFailedError(errors)
    return plan


def _add(client: S3Client, cache: InputCache, plan: _Plan, file: _File) -> None:
    key = None
    if cache.accepts(file.size):
        key, file = _identify(client, file)
    if key is None:
        plan.straight.append(DownloadItem(file.uri, file.dest, file.sha256, file.size))
    else:
        plan.by_key.setdefault(key, []).append(file)


def _identify(client: S3Client, file: _File) -> tuple[Key | None, _File]:
    """The file's cache key, and the file with the digest its object records, if any.

    A file without a known SHA-256 (an index file next to a storage-mode input) costs a
    HEAD: the object's recorded digest makes it a content entry like any other; else its
    ETag names this version of the object. What the HEAD cannot settle (no such object,
    another size) is left to the straight download, which reports it as without a cache."""
    if file.sha256:
        return Key.content(file.sha256), file
    s3 = S3Uri.parse(file.uri)
    try:
        head = client.head_object(Bucket=s3.bucket, Key=s3.key)
        if head["ContentLength"] != file.size:
            return None, file
        digest = head.get("Metadata", {}).get(SHA256_META) or objects.tagged_sha256(client, s3)
    except (ClientError, BotoCoreError):
        return None, file
    if digest and len(digest) == 64 and set(digest) <= _HEX64:
        # The download checks this digest, as it would the recorded one without a cache.
        return Key.content(digest), _File(file.uri, file.dest, digest, file.size)
    return Key.object(file.uri, head["ETag"], file.size), file


def _directory_files(client: S3Client, entry: InputEntry, dest: Path) -> list[_File]:
    """A directory's files from its listing (verified against the manifest), its
    subdirectories made, so each file can be cached on its own."""
    base = S3Uri.parse(entry.uri)
    s3 = base.child(LISTING_NAME)
    try:
        raw = read_listing(client, base, dest)
    except BotoCoreError as e:
        raise TransferError(f"{dest}: cannot read {s3}: {e}") from e
    digest = sha256_bytes(raw)
    if entry.sha256 and digest != entry.sha256:
        raise ChecksumMismatchError(
            f"{dest}: checksum mismatch for {s3}: got sha256 {digest}, expected "
            f"{entry.sha256}; the directory was not written"
        )
    try:
        listing = Listing.from_bytes(raw)
    except (ValueError, KeyError, TypeError) as e:
        raise TransferError(f"{dest}: {s3} is not a valid directory listing: {e}") from e
    dest.mkdir(parents=True, exist_ok=True)
    for rel in listing.dirs:  # empty ones too
        (dest / rel).mkdir(parents=True, exist_ok=True)
    return [_File(str(base.child(f.path)), dest / f.path, f.sha256, f.size) for f in listing.files]


# -- through the cache ----------------------------------------------------------------


class _Through:
    def __init__(self, client: S3Client, cache: InputCache, stats: CacheStats) -> None:
        self.client = client
        self.cache = cache
        self.stats = stats

    def run(self, plan: _Plan) -> None:
        mine: dict[Key, EntryLock] = {}
        busy: list[Key] = []
        try:
            for key in sorted(plan.by_key):  # step 1
                lock = self.cache.lock(key, wait=False)
                if lock is None:
                    busy.append(key)
                    continue
                mine[key] = lock
                if self._hit(key, plan.by_key[key]):
                    mine.pop(key).release()
            self._download({k: plan.by_key[k] for k in mine}, plan.straight)  # step 2
        finally:
            for lock in mine.values():
                lock.release()
        for key in busy:  # step 3
            self._wait_for(key, plan.by_key[key])

    def _hit(self, key: Key, files: list[_File]) -> bool:
        """Place the entry's files if it is valid (under its lock)."""
        state = self.cache.check(key)
        if state == CHANGED:
            self.stats.changed += 1
            log(f"input cache: {files[0].uri} changed in the cache; downloading it again")
        if state != VALID:
            return False
        for file in files:
            self._place(key, file, hit=True)
        return True

    def _download(self, misses: dict[Key, list[_File]], straight: list[DownloadItem]) -> None:
        """One parallel batch: files straight into scratch, misses into the cache."""
        into_cache = {str(self.cache.entry(key)): key for key in misses}  # by result path
        items = [*straight]
        for key, files in misses.items():
            first = files[0]
            items.append(DownloadItem(first.uri, self.cache.entry(key), first.sha256, first.size))
        if not items:
            return
        try:
            results, error = download_files(items, client=self.client).results, None
        except TransferFailedError as e:
            results, error = e.results, e
        for result in results:
            done = into_cache.get(result.path)
            if done is None:
                self._count_straight(result)
                continue
            # Sealed even when another file failed: the next job finds it complete.
            self.cache.seal(done)
            first, *others = misses[done]
            self._place(done, first, hit=False)
            for file in others:
                self._place(done, file, hit=True)
        if error is not None:
            raise error

    def _wait_for(self, key: Key, files: list[_File]) -> None:
        self.stats.waited += 1
        log(f"input cache: another job on this instance has {files[0].uri}; waiting for it")
        lock = self.cache.lock(key, wait=True)
        assert lock is not None
        try:
            if not self._hit(key, files):
                self._download({key: files}, [])
        finally:
            lock.release()

    def _place(self, key: Key, file: _File, *, hit: bool) -> None:
        if not self.cache.place(key, file.dest):
            self.stats.copied += 1
        if hit:
            self.stats.hits += 1
            self.stats.hit_bytes += file.size
        else:
            self.stats.misses += 1
            self.stats.miss_bytes += file.size

    def _count_straight(self, result: FileResult) -> None:
        self.stats.uncached += result.files
        self.stats.uncached_bytes += result.size


def _evict(cache: InputCache, stats: CacheStats) -> None:
    """Keep the cache within its bound; a failure here never fails the job."""
    if not stats.misses:
        return  # nothing was added
    try:
        evicted = cache.evict()
    except OSError as e:
        log(f"input cache: eviction failed: {e}")
        return
    stats.evicted, stats.evicted_bytes = len(evicted), sum(evicted)
