"""Checks for relative paths that come from manifests and directory listings (untrusted text)."""

from __future__ import annotations

from pathlib import PurePosixPath


def checked_relpath(rel: str) -> str:
    """Return `rel` if it is a relative path that stays below its base directory, else raise."""
    parts = PurePosixPath(rel).parts
    if not rel or "\0" in rel or rel.startswith("/") or not parts or ".." in parts:
        raise ValueError(f"not a relative path below the working directory: {rel!r}")
    if parts == (".",):
        raise ValueError(f"path names the working directory itself: {rel!r}")
    return rel
