"""The job's private scratch directory on the instance's shared scratch volume.

Each runner holds an exclusive flock on `<root>/<name>.lock` for as long as it lives.
A runner killed outright (SIGKILL after the stop timeout, an OOM kill of the container)
cannot clean up, so every runner first sweeps directories whose lock nobody holds any
more: the kernel drops a flock when its holder dies, also across containers sharing the
host volume. Locks younger than a minute are left alone, so a runner that has created
its lock file but not yet locked it is never mistaken for a dead one.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOCK_SUFFIX = ".lock"
ORPHAN_MIN_AGE_SECONDS = 60.0


@dataclass
class Scratch:
    root: Path
    path: Path  # the job's own directory: work/ (the command's cwd) and tmp/ (its TMPDIR)
    lock_fd: int

    @property
    def workdir(self) -> Path:
        return self.path / "work"

    @property
    def tmpdir(self) -> Path:
        return self.path / "tmp"

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + LOCK_SUFFIX)

    @classmethod
    def create(
        cls, root: Path, job_id: str | None, attempt: str | None, name: str | None = None
    ) -> Scratch:
        """`name`: a given one (a multi-node job's worker takes its main node's, so that
        the ranks MPI starts there find the same working directory)."""
        root.mkdir(parents=True, exist_ok=True)
        name = name or scratch_name(job_id, attempt)
        lock_path = root / (name + LOCK_SUFFIX)
        # O_EXCL: the random part makes a clash practically impossible; if it happens, fail.
        fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_CLOEXEC, 0o600)
        scratch = cls(root, root / name, fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            scratch.path.mkdir(mode=0o700)
            scratch.workdir.mkdir(mode=0o700)
            scratch.tmpdir.mkdir(mode=0o700)
        except BaseException:
            # Also a signal: half a scratch directory must not wait for the orphan sweep.
            scratch.remove()
            raise
        return scratch

    def remove(self) -> None:
        """Delete the directory, then the lock; the lock goes last so a sweep can finish the job."""
        remove_tree(self.path)
        self.lock_path.unlink(missing_ok=True)
        os.close(self.lock_fd)


def scratch_name(job_id: str | None, attempt: str | None) -> str:
    """`<Batch job id>-a<attempt>-<random hex>`; outside Batch, the pid stands in."""
    job = re.sub(r"[^A-Za-z0-9._-]", "-", job_id or f"local{os.getpid()}")
    job = re.sub(r"^\.", "-", job)  # dot names are the instance's own (the input cache)
    tries = re.sub(r"[^0-9]", "", attempt or "") or "0"
    return f"{job}-a{tries}-{secrets.token_hex(6)}"


def sweep_orphans(root: Path) -> list[Path]:
    """Remove scratch directories of runners that died without cleaning up; return them.

    Runners starting together sweep together: each holds an orphan's lock while it removes
    the directory, so only one of them does it, and a failure here never fails a job.
    Names starting with a dot are never a job's: the instance's input cache
    (`.awsbatch-cache`, jobside/cache.py) outlives the jobs that fill it."""
    removed: list[Path] = []
    try:
        locks = [p for p in root.glob("*" + LOCK_SUFFIX) if not p.name.startswith(".")]
    except OSError:
        return removed
    for lock_path in locks:
        fd = _claim_if_dead(lock_path)
        if fd is None:
            continue
        try:
            if not lock_path.exists():  # another runner removed it meanwhile
                continue
            directory = lock_path.with_name(lock_path.name[: -len(LOCK_SUFFIX)])
            remove_tree(directory)
            lock_path.unlink(missing_ok=True)
            removed.append(directory)
        except OSError as e:
            print(f"[awsbatch-runner] cannot remove orphan {lock_path}: {e}", file=sys.stderr)
        finally:
            os.close(fd)
    return removed


def _claim_if_dead(lock_path: Path) -> int | None:
    """An fd holding the lock of a scratch directory whose runner is gone, else None."""
    try:
        if time.time() - lock_path.stat().st_mtime < ORPHAN_MIN_AGE_SECONDS:
            return None
        fd = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except OSError:
        os.close(fd)
        return None


def remove_tree(path: Path) -> None:
    """rmtree that also removes what tools left read-only (or unreadable) behind."""
    if not path.exists():
        return
    try:
        shutil.rmtree(path, onerror=_missing_is_fine)
    except OSError:
        _make_writable(path)
        shutil.rmtree(path, onerror=_missing_is_fine)


def _missing_is_fine(function: Any, path: str, exc_info: Any) -> None:
    # What is gone already (removed by the job's own tools meanwhile) needs no removing.
    if not issubclass(exc_info[0], FileNotFoundError):
        raise exc_info[1]


def _make_writable(path: Path) -> None:
    # A directory without w (or x/r) permission blocks deleting its entries even for its
    # owner; chmod each directory before os.walk descends into it.
    _chmod(path)
    for here, subdirs, _ in os.walk(path):
        for d in subdirs:
            _chmod(Path(here) / d)


def _chmod(path: Path) -> None:
    try:
        if not path.is_symlink():
            os.chmod(path, 0o700)
    except OSError as e:
        print(f"[awsbatch-runner] cannot chmod {path}: {e}", file=sys.stderr)
