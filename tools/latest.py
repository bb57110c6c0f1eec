"""Helpers of `make test-latest`, run with the Python of the unlocked virtualenv.

python tools/latest.py report
    The versions this virtualenv got against the lock's, and the releases on the
    package index that our ranges exclude (the next ones to try).
python tools/latest.py job-requirements containers/requirements.txt
    `name==version` of this virtualenv for every package of the job lock, so that the
    sandbox's job image runs what this virtualenv runs (SNAKEMAKE_AWSBATCH_SANDBOX_REQUIREMENTS).
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

from check_job_lock import pins  # this script's directory is on sys.path
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
DISTRIBUTION = "snakemake-executor-plugin-awsbatch"
DEV_LOCK = REPO / "requirements" / "dev.txt"


def direct_requirements() -> list[Requirement]:
    """The plugin's own dependencies and those of its sandbox extra."""
    found = []
    for text in importlib.metadata.requires(DISTRIBUTION) or []:
        requirement = Requirement(text)
        marker = requirement.marker
        if marker is None or marker.evaluate({"extra": "sandbox"}):
            found.append(requirement)
    return found


def newest_release(name: str) -> Version | None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", "--json", name],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return None
    versions = [Version(v) for v in json.loads(done.stdout)["versions"]]
    final = [v for v in versions if not v.is_prerelease]
    return max(final) if final else None


def report() -> int:
    locked = pins(DEV_LOCK)
    for requirement in direct_requirements():
        name = requirement.name
        installed = importlib.metadata.version(name)
        allowed = requirement.specifier or "any"
        line = f"{name} {installed} (locked {locked.get(name.lower(), '-')}, range {allowed})"
        newest = newest_release(name)
        if newest is not None and newest not in requirement.specifier:
            line += f"; {newest} is out and outside the range: try it"
        print(line)
    return 0


def job_requirements(lock: Path) -> int:
    for name, locked in sorted(pins(lock).items()):
        try:
            print(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            print(f"{name}=={locked}")  # hatchling, the image's build backend, is not here
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["report"]:
        return report()
    if argv[:1] == ["job-requirements"] and len(argv) == 2:
        return job_requirements(Path(argv[1]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
