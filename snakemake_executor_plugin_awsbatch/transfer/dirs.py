"""`directory()` outputs in S3: the files below a prefix plus a listing object.

The listing (`<prefix>/.awsbatch-directory.json`) is written last, so a directory is
complete exactly when its listing exists; it names every file with size and SHA-256 and
every subdirectory, so empty directories survive. Readers use the listing, never a LIST
of the prefix, so stray objects from an earlier run under the same prefix are ignored.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .paths import checked_relpath

LISTING_NAME = ".awsbatch-directory.json"
_LISTING_VERSION = 1


@dataclass(frozen=True)
class ListedFile:
    path: str  # relative, '/'-separated
    size: int
    sha256: str


@dataclass(frozen=True)
class Listing:
    files: list[ListedFile]
    dirs: list[str]

    def to_bytes(self) -> bytes:
        data = {
            "version": _LISTING_VERSION,
            "files": [[f.path, f.size, f.sha256] for f in self.files],
            "dirs": self.dirs,
        }
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Listing:
        data = json.loads(raw)
        if data.get("version") != _LISTING_VERSION:
            raise ValueError(f"unsupported directory listing version {data.get('version')!r}")
        files = [ListedFile(checked_relpath(p), int(s), str(h)) for p, s, h in data["files"]]
        dirs = [checked_relpath(d) for d in data["dirs"]]
        return cls(files, dirs)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def scan(root: Path) -> tuple[list[str], list[str]]:
    """Relative paths of all files and all subdirectories below `root`, sorted."""
    files: list[str] = []
    dirs: list[str] = []
    for here, subdirs, names in os.walk(root):
        rel_here = Path(here).relative_to(root)
        dirs.extend((rel_here / d).as_posix() for d in subdirs)
        files.extend((rel_here / n).as_posix() for n in names)
    if LISTING_NAME in files:
        raise ValueError(f"{root}: contains a file named {LISTING_NAME}, which is reserved")
    return sorted(files), sorted(dirs)
