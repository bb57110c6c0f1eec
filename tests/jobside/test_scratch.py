"""Scratch directories: unique names, and the sweep of directories whose runner was killed."""

from __future__ import annotations

import os
import time
from pathlib import Path

from snakemake_executor_plugin_awsbatch.jobside.scratch import (
    ORPHAN_MIN_AGE_SECONDS,
    Scratch,
    scratch_name,
    sweep_orphans,
)


def backdate(path: Path) -> None:
    old = time.time() - ORPHAN_MIN_AGE_SECONDS - 10
    os.utime(path, (old, old))


def test_name_comes_from_job_id_and_attempt_plus_randomness() -> None:
    a, b = scratch_name("abc:12", "3"), scratch_name("abc:12", "3")
    assert a.startswith("abc-12-a3-") and b.startswith("abc-12-a3-") and a != b
    assert scratch_name(None, None).startswith(f"local{os.getpid()}-a0-")


def test_scratch_is_private_and_removed_with_its_lock(tmp_path: Path) -> None:
    scratch = Scratch.create(tmp_path, "job", "1")
    assert scratch.path.stat().st_mode & 0o777 == 0o700
    (scratch.workdir / "ro").mkdir()
    (scratch.workdir / "ro" / "f").write_text("x")
    os.chmod(scratch.workdir / "ro" / "f", 0o400)
    os.chmod(scratch.workdir / "ro", 0o500)
    scratch.remove()
    assert list(tmp_path.iterdir()) == []


def test_sweep_removes_only_directories_whose_runner_is_gone(tmp_path: Path) -> None:
    dead = Scratch.create(tmp_path, "dead", "1")
    (dead.workdir / "big").write_text("left behind")
    os.close(dead.lock_fd)  # what the kernel does when the runner is SIGKILLed
    live = Scratch.create(tmp_path, "live", "1")
    young = Scratch.create(tmp_path, "young", "1")
    os.close(young.lock_fd)  # unlocked but too recent: it may be a runner starting up
    backdate(dead.lock_path)
    backdate(live.lock_path)

    assert sweep_orphans(tmp_path) == [dead.path]

    assert not dead.path.exists() and not dead.lock_path.exists()
    assert live.path.exists() and young.path.exists()
    live.remove()


def test_runners_sweeping_together_remove_an_orphan_once_and_never_fail(tmp_path: Path) -> None:
    import threading

    dead = Scratch.create(tmp_path, "dead", "1")
    for i in range(200):  # enough to make the removal take a while
        (dead.workdir / f"f{i}").write_text("x")
    os.close(dead.lock_fd)
    backdate(dead.lock_path)
    found: list[list[Path]] = []
    errors: list[BaseException] = []

    def sweep() -> None:
        try:
            found.append(sweep_orphans(tmp_path))
        except BaseException as e:  # the bug this guards: FileNotFoundError from rmtree
            errors.append(e)

    sweepers = [threading.Thread(target=sweep) for _ in range(8)]
    for t in sweepers:
        t.start()
    for t in sweepers:
        t.join()
    assert errors == []
    assert sorted(len(f) for f in found) == [0] * 7 + [1]
    assert list(tmp_path.iterdir()) == []
