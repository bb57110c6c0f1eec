"""SHA-256 of local files, with a cache so reruns do not rehash unchanged gigabytes.

A cached digest is reused only while the file's (size, mtime_ns, inode) stamp is
unchanged. Like git's "racy" index entries, a digest is not cached when the file was
modified within the last few seconds: a write in the same timestamp tick would not
change the stamp.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

RACY_SECONDS = 2.0
_CACHE_VERSION = 1


@dataclass(frozen=True)
class FileStamp:
    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> FileStamp:
        st = os.stat(path)
        return cls(st.st_size, st.st_mtime_ns, st.st_ino)


@dataclass(frozen=True)
class Digests:
    """A file's SHA-256 and, for files small enough to go up in one request, its MD5.

    The MD5 equals the ETag S3 gives a single-request upload (without SSE-KMS), so one
    LIST can show that many small objects are unchanged without a HEAD for each.
    """

    sha256: str
    md5: str | None = None


def sha256_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def digests_of(data: bytes | memoryview) -> Digests:
    return Digests(hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest())


def sha256_file(path: str | os.PathLike[str]) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class HashCache:
    """A JSON map path -> (stamp, sha256), loaded once and saved explicitly; thread-safe."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._entries: dict[str, list] = {}
        self._dirty = False
        if self.path is not None:
            self._entries = _load(self.path)

    def lookup(self, path: str | os.PathLike[str], stamp: FileStamp) -> Digests | None:
        """The cached digests if the file's stamp is unchanged since it was hashed."""
        with self._lock:
            entry = self._entries.get(os.path.abspath(path))
        if entry is not None and entry[:3] == [stamp.size, stamp.mtime_ns, stamp.inode]:
            return Digests(str(entry[3]), entry[4] if len(entry) > 4 else None)
        return None

    def digest(self, path: str | os.PathLike[str], stamp: FileStamp) -> str:
        """The file's SHA-256, from the cache if its stamp is unchanged, else by reading it."""
        cached = self.lookup(path, stamp)
        if cached is not None:
            return cached.sha256
        digest = sha256_file(path)
        self.remember(path, stamp, Digests(digest))
        return digest

    def remember(
        self,
        path: str | os.PathLike[str],
        stamp: FileStamp,
        digests: Digests,
        *,
        trusted: bool = False,
    ) -> None:
        """Cache digests; `trusted` for files this process itself just wrote and verified."""
        if not trusted and time.time_ns() - stamp.mtime_ns < RACY_SECONDS * 1e9:
            return
        entry = [stamp.size, stamp.mtime_ns, stamp.inode, digests.sha256, digests.md5]
        with self._lock:
            self._entries[os.path.abspath(path)] = entry
            self._dirty = True

    def save(self) -> None:
        """Write the cache atomically (temp file + rename) if anything changed."""
        if self.path is None or not self._dirty:
            return
        with self._lock:
            text = json.dumps({"version": _CACHE_VERSION, "entries": self._entries})
            self._dirty = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".sha256-cache-")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, self.path)


def _load(path: Path) -> dict[str, list]:
    # A missing or unreadable cache only costs rehashing, so it is never an error.
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != _CACHE_VERSION:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}
