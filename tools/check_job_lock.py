"""Check the job image's lock for both architectures the job image is built for.

`make lock` runs it after pip-compile, which resolves on this machine only (Linux, this
Python, this CPU). For Python 3.11 on linux x86_64 and aarch64 it checks that

1. the lock is closed: every dependency any locked package needs there (its markers
   evaluated for that platform, extras followed) is locked too; and
2. every locked package has a file for that platform whose hash is in the lock
   (`pip download --no-deps --platform ...`, with the machine's pip configuration).

    python tools/check_job_lock.py containers/requirements.txt [--offline]

--offline does only the first check (the tests run it so).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PYTHON = "3.11"
MACHINES = ("x86_64", "aarch64")
# Wheels built for these glibc generations install on the job image (Debian 12: 2.36).
MANYLINUX = ("manylinux2014", "manylinux_2_28", "manylinux_2_34")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")


def pins(lock: Path) -> dict[str, str]:
    """{canonical name: version} of every `name==version` line."""
    found = {}
    for line in lock.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            found[canonicalize_name(match.group(1))] = match.group(2)
    return found


def roots(lock: Path) -> list[Requirement]:
    """The lock's own inputs: the requirements of the .in file beside it."""
    source = lock.with_suffix(".in")
    lines = (line.split("#", 1)[0].strip() for line in source.read_text().splitlines())
    return [Requirement(line) for line in lines if line and not line.startswith("-")]


def missing(lock: Path, machine: str) -> list[str]:
    """What a locked package needs on linux `machine` and the lock lacks."""
    locked = pins(lock)
    environment = {
        **default_environment(),
        "platform_machine": machine,
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "python_version": PYTHON,
        "python_full_version": f"{PYTHON}.0",
    }
    lacking: set[str] = set()
    for requirement in _closure(roots(lock), environment):
        name = canonicalize_name(requirement.name)
        if name not in locked:
            lacking.add(f"{requirement} (on {machine})")
    return sorted(lacking)


def _closure(wanted: list[Requirement], environment: dict[str, str]) -> Iterator[Requirement]:
    """Every requirement reached from `wanted` on that platform, with the extras asked for.

    Reads the metadata installed here: the job lock is constrained by the development
    lock, so its versions are the ones this virtualenv holds (checked)."""
    seen: set[tuple[str, str]] = set()
    queue = list(wanted)
    while queue:
        requirement = queue.pop()
        for extra in sorted(requirement.extras) or [""]:
            key = (canonicalize_name(requirement.name), extra)
            if key in seen:
                continue
            seen.add(key)
            yield requirement
            queue += _requires(requirement.name, extra, environment)


def _requires(name: str, extra: str, environment: dict[str, str]) -> list[Requirement]:
    try:
        texts = importlib.metadata.requires(name) or []
    except importlib.metadata.PackageNotFoundError:
        return []  # reported as missing if the lock lacks it; else not installed here
    needed = []
    for text in texts:
        requirement = Requirement(text)
        marker = requirement.marker
        if marker is None or marker.evaluate({**environment, "extra": extra}):
            needed.append(requirement)
    return needed


def version_mismatches(lock: Path) -> list[str]:
    """Locked versions that differ from this virtualenv's (the closure reads its metadata)."""
    wrong = []
    for name, version in pins(lock).items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if installed != version:
            wrong.append(f"{name} {version} locked, {installed} installed")
    return wrong


def download_failures(lock: Path, machine: str) -> str | None:
    """pip's last line if some locked package has no hashed file for that platform."""
    platforms = [arg for tag in MANYLINUX for arg in ("--platform", f"{tag}_{machine}")]
    with tempfile.TemporaryDirectory() as dest:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--dest",
            dest,
            "--python-version",
            PYTHON,
            *platforms,
            "--require-hashes",
            "-r",
            str(lock),
        ]
        done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode == 0:
        return None
    lines = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
    return lines[-1] if lines else done.stderr.strip()[-300:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("lock", type=Path)
    parser.add_argument("--offline", action="store_true", help="skip the downloads")
    args = parser.parse_args(argv)
    problems = version_mismatches(args.lock)
    for machine in MACHINES:
        problems += [f"not locked: {item}" for item in missing(args.lock, machine)]
        if not args.offline:
            failure = download_failures(args.lock, machine)
            if failure:
                problems.append(f"no file for linux {machine}: {failure}")
    for problem in problems:
        print(f"{args.lock}: {problem}", file=sys.stderr)
    if not problems:
        checked = "closed" if args.offline else "closed, every file there"
        print(f"{args.lock}: {checked} for Python {PYTHON} on linux {', '.join(MACHINES)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
