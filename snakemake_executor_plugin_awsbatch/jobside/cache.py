"""The instance's input cache: large job inputs kept once per instance, by content.

Many jobs on one instance read the same large inputs (a 5 GB bwa index that 1,000 jobs
read). Without the cache each job downloads its own copy into its private scratch
directory. With it, the first job that needs a file downloads it once into
`<scratch root>/.awsbatch-cache/` and every job hard-links the cached file into its own
scratch (copies it where a link is refused). The scratch root is one host directory that
every container of the instance mounts at the same path, so all of them share the cache.

    .awsbatch-cache/sha256/<sha256>         an entry: the file, read-only (0444)
    .awsbatch-cache/sha256/<sha256>.stamp   its integrity stamp; the stamp file's own
                                            mtime is when the entry was last used (LRU)
    .awsbatch-cache/sha256/<sha256>.lock    flock'ed while the entry is checked, linked,
                                            downloaded or evicted
    .awsbatch-cache/object/<key>            the same for objects whose SHA-256 is not
                                            known: key = SHA-256 of (URI, ETag, size)

Only the job runner's input download (fetch.py) inserts, so the cache never holds outputs.

Integrity: the stamp records the entry's (size, mtime_ns, inode) when it was inserted;
every use compares it, and a changed entry is removed and downloaded again. A job that
writes into its input writes into the cached inode (a hard link is the same file): a
write changes mtime, so the next job notices. Entries are not re-hashed on use: hashing
5 GB costs about as much as downloading it again, which is what the cache saves.

Concurrency: all state is in the file system, guarded by one flock per entry, so jobs in
separate containers coordinate like threads of one process. A killed job's locks go with
it (the kernel drops them); what it leaves (a temporary download) is removed by the next
job that opens the cache.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .log import log

CACHE_DIR = ".awsbatch-cache"
# Files smaller than this are downloaded straight into scratch. Below ~1 MiB a GET costs
# mostly its round trip (tens of ms, and the transfer layer runs 16 at once), so a cache
# hit saves little, while each entry costs three files (entry, stamp, lock) and a place in
# the eviction scan; sources and configs would fill the cache with thousands of them.
MIN_SIZE = 1024 * 1024
CONTENT, OBJECT = "sha256", "object"  # the key namespaces, one directory each
READ_ONLY = 0o444
_RACY_NS = 2_000_000_000

_KEY = re.compile(r"^\.?([0-9a-f]{64})")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*|%)\s*$")
_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
OFF = "off"


# -- the bound -------------------------------------------------------------------------


@dataclass(frozen=True)
class Bound:
    """How large the cache may grow: bytes, or a share of the scratch file system."""

    size: int | None = None
    percent: float | None = None

    def __str__(self) -> str:
        """The canonical form that travels in the manifest (parse_bound reads it back)."""
        if self.percent is not None:
            return f"{self.percent:.6f}".rstrip("0").rstrip(".") + "%"
        return f"{self.size}B"

    def resolve(self, scratch_root: Path) -> int:
        """The bound in bytes on this instance."""
        if self.percent is None:
            assert self.size is not None
            return self.size
        fs = os.statvfs(scratch_root)
        return int(fs.f_blocks * fs.f_frsize * self.percent / 100)


def parse_bound(text: str) -> Bound | None:
    """`200GiB`, `500GB`, `25%` -> a Bound; `0` or `off` -> None; else ValueError (why)."""
    value = text.strip()
    if value.lower() == OFF:
        return None
    match = _SIZE.match(value)
    if not match:
        raise ValueError("is neither a size, a percentage nor off")
    number, unit = float(match[1]), match[2].lower()
    if unit == "%":
        if number > 100:
            raise ValueError("is more than the whole scratch file system")
        return Bound(percent=number) if number else None
    if not unit and number:
        raise ValueError("has no unit")
    if unit and unit not in _UNITS:
        raise ValueError(f"has an unknown unit {match[2]!r}")
    size = int(number * _UNITS[unit or "b"])
    return Bound(size=size) if size else None


# -- keys and locks ----------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Key:
    namespace: str  # CONTENT or OBJECT
    name: str  # 64 hex digits

    @classmethod
    def content(cls, sha256: str) -> Key:
        return cls(CONTENT, sha256)

    @classmethod
    def object(cls, uri: str, etag: str, size: int) -> Key:
        """An object known only by its identity; a new version has a new ETag, so a new key."""
        identity = f"{uri}\n{etag}\n{size}".encode()
        return cls(OBJECT, hashlib.sha256(identity).hexdigest())


class EntryLock:
    """An exclusive flock on one entry's lock file (released by release() or process death)."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path

    def release(self, *, remove: bool = False) -> None:
        # The lock file is removed while still locked, so whoever opened it meanwhile sees
        # (after its own flock) that it no longer is the lock file, and opens the new one.
        if remove:
            self.path.unlink(missing_ok=True)
        os.close(self.fd)


def _flock(path: Path, wait: bool) -> EntryLock | None:
    while True:
        fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:  # also the runner's signal exception while waiting
            os.close(fd)
            raise
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            return EntryLock(fd, path)
        os.close(fd)  # an evicter removed this lock file while we waited: take the new one


# -- the cache ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Stamp:
    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, st: os.stat_result) -> Stamp:
        return cls(st.st_size, st.st_mtime_ns, st.st_ino)


VALID, ABSENT, CHANGED = "valid", "absent", "changed"


class InputCache:
    def __init__(self, path: Path, bound: int) -> None:
        self.path = path
        self.bound = bound

    def accepts(self, size: int) -> bool:
        """Whether a file of this size goes through the cache (a file larger than the
        bound would evict everything else and still not fit: it goes straight to scratch)."""
        return MIN_SIZE <= size <= self.bound

    def entry(self, key: Key) -> Path:
        return self.path / key.namespace / key.name

    def _stamp(self, key: Key) -> Path:
        return self.path / key.namespace / f"{key.name}.stamp"

    def lock(self, key: Key, *, wait: bool) -> EntryLock | None:
        """The entry's lock; None if someone else holds it and `wait` is False."""
        return _flock(self.path / key.namespace / f"{key.name}.lock", wait)

    # -- under the entry's lock

    def check(self, key: Key) -> str:
        """VALID, ABSENT, or CHANGED (then the entry is gone: download it again)."""
        try:
            st = os.stat(self.entry(key))
        except FileNotFoundError:
            return ABSENT
        recorded = self._read_stamp(key)
        if recorded == Stamp.of(st):
            return VALID
        self._discard(key)
        # Without a stamp the entry was never completed (its job died after the rename):
        # not a corruption, just a download to redo.
        return ABSENT if recorded is None else CHANGED

    def seal(self, key: Key) -> None:
        """Complete an entry the transfer layer has just renamed into place (verified)."""
        entry = self.entry(key)
        # Dated a little back, like git's "racy" index entries: a write within the same
        # timestamp tick as the download would otherwise leave (size, mtime) unchanged.
        now = time.time_ns()
        os.utime(entry, ns=(now, now - _RACY_NS))
        os.chmod(entry, READ_ONLY)  # a deterrent: root (most containers) can still write
        stamp = Stamp.of(os.stat(entry))
        target = self._stamp(key)
        tmp = target.with_name(f".{key.name}.stamp-{secrets.token_hex(4)}")
        tmp.write_text(json.dumps(asdict(stamp)))
        os.replace(tmp, target)  # its mtime, now, is the entry's first use

    def place(self, key: Key, dest: Path) -> bool:
        """Put the entry at `dest`: a hard link (True), or a copy where linking fails (False)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.unlink(missing_ok=True)
        entry = self.entry(key)
        try:
            os.link(entry, dest)
            linked = True
        except OSError:
            # EXDEV (another mount), EPERM (protected_hardlinks, another user's entry),
            # EMLINK (the inode's link limit): a copy serves the job just as well.
            shutil.copyfile(entry, dest)
            linked = False
        # "Last used" goes on the stamp: the entry's own mtime is part of its stamp.
        os.utime(self._stamp(key))
        return linked

    def _read_stamp(self, key: Key) -> Stamp | None:
        try:
            return Stamp(**json.loads(self._stamp(key).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _discard(self, key: Key) -> None:
        self.entry(key).unlink(missing_ok=True)
        self._stamp(key).unlink(missing_ok=True)

    # -- maintenance, by any job

    def evict(self) -> list[int]:
        """Remove least recently used entries until the cache fits its bound; their sizes.

        An entry a running job links (st_nlink > 1) or whose lock someone holds (being
        downloaded, checked or linked) stays: when all are held the cache stays over its
        bound until their jobs end."""
        entries = self._entries()
        total = sum(size for _, size, _ in entries)
        evicted: list[int] = []
        for key, _, _ in sorted(entries, key=lambda e: e[2]):
            if total <= self.bound:
                break
            size = self._evict_one(key)
            if size is not None:
                total -= size
                evicted.append(size)
        return evicted

    def _evict_one(self, key: Key) -> int | None:
        lock = self.lock(key, wait=False)
        if lock is None:
            return None
        try:
            st = os.stat(self.entry(key))
            if st.st_nlink > 1:
                return None
            self._discard(key)
            return st.st_size
        except FileNotFoundError:
            return None
        finally:
            lock.release(remove=not self.entry(key).exists())

    def _entries(self) -> list[tuple[Key, int, float]]:
        """(key, size, last used) of every entry; an entry without stamp counts as oldest."""
        found = []
        for key, names in self._names().items():
            if key.name not in names:
                continue
            try:
                size = os.stat(self.entry(key)).st_size
            except FileNotFoundError:
                continue
            try:
                used = os.stat(self._stamp(key)).st_mtime
            except FileNotFoundError:
                used = 0.0
            found.append((key, size, used))
        return found

    def tidy(self) -> None:
        """Remove what dead jobs left: temporary downloads and stamps, and stamps and lock
        files without an entry. Only under the entry's lock, so never a live job's file."""
        for key, names in self._names().items():
            temporary = [n for n in names if n.startswith(".")]
            if key.name in names and not temporary:
                continue
            lock = self.lock(key, wait=False)
            if lock is None:
                continue
            try:
                # Temporary files are written only under the lock: now nobody writes them.
                for name in temporary:
                    (self.path / key.namespace / name).unlink(missing_ok=True)
                if not self.entry(key).exists():
                    self._stamp(key).unlink(missing_ok=True)
            finally:
                lock.release(remove=not self.entry(key).exists())

    def _names(self) -> dict[Key, list[str]]:
        """The file names of each key, per namespace; names of no key are left alone."""
        found: dict[Key, list[str]] = {}
        for namespace in (CONTENT, OBJECT):
            with os.scandir(self.path / namespace) as it:
                for item in it:
                    match = _KEY.match(item.name)
                    if match:
                        found.setdefault(Key(namespace, match[1]), []).append(item.name)
        return found


def open_cache(scratch_root: Path, spec: str) -> InputCache | None:
    """The instance's cache as the manifest's setting asks, or None (off, or unusable: a
    cache that cannot work never fails a job; its inputs are downloaded as without it)."""
    bound = parse_bound(spec)
    if bound is None:
        return None
    path = scratch_root / CACHE_DIR
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        for namespace in (CONTENT, OBJECT):
            (path / namespace).mkdir(mode=0o700, exist_ok=True)
        cache = InputCache(path, bound.resolve(scratch_root))
        cache.tidy()
    except OSError as e:
        log(f"input cache: cannot use {path} ({e}); downloading every input")
        return None
    return cache
