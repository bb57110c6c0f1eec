"""Build the sandbox's base image without any registry: debootstrap + wheels + podman import.

Steps (as root, in a temporary directory):

1. `debootstrap --variant=minbase --include=python3,python3-venv,...` from the machine's
   own apt mirror, while, at the same time, the HOST's pip builds a wheelhouse of the
   pinned Python requirements. The host's pip runs with the host's configuration (config
   files, PIP_* variables, CA bundle, local find-links), so it resolves exactly as
   `pip install` does on this machine and the chroot needs no network or pip config.
   With a hashed lock, the host's pip checks every download against it.
2. In the chroot: `python3 -m venv /opt/venv` and an offline install from the wheelhouse
   of exactly the pinned versions (a wheel built from an sdist has a hash of its own, so
   the chroot's pip is given the versions, not the hashes).
3. `tar | podman import` with PATH, WORKDIR and CMD set.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from snakemake_executor_plugin_awsbatch.sandbox.debian import Source
from snakemake_executor_plugin_awsbatch.sandbox.errors import SandboxError

VENV = "/opt/venv"
# What every image needs besides the caller's packages: Python for Snakemake, bash and
# coreutils for the job command, CA certificates for real endpoints; patchelf and binutils
# (strip) for building the job runtime of tool-only images from it (runtime/bundle.py).
BASE_PACKAGES = (
    "python3",
    "python3-venv",
    "ca-certificates",
    "bash",
    "coreutils",
    "procps",
    "patchelf",
    "binutils",
)
IMAGE_CHANGES = (
    f"ENV PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    "WORKDIR /work",
    'CMD ["bash"]',
)
PLAIN_IMAGE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    'CMD ["/bin/sh"]',
)
# A clean environment for commands in the chroot: nothing of the host's leaks in.
CHROOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
}


def build_base(
    tag: str,
    source: Source,
    packages: Sequence[str],
    requirements: Sequence[str],
    requirements_file: Path | None,
    python_version: str | None,
    log: Path,
    podman_env: dict[str, str],
) -> None:
    """Build the base image and import it into podman as tag.

    requirements: `name==version` of every package the venv gets; requirements_file, if
    given, is where they come from, with their hashes, which the host's pip checks.

    python_version is the image's Python (major.minor) if known beforehand (then the
    wheelhouse is fetched while debootstrap runs), else None (read from the chroot after).
    """
    with tempfile.TemporaryDirectory(prefix="awsbatch-sandbox-rootfs-", dir="/var/tmp") as tmp:
        root, wheels = Path(tmp) / "root", Path(tmp) / "wheels"
        wanted = ["-r", str(requirements_file)] if requirements_file else list(requirements)
        with open(log, "a") as out:
            include = sorted({*BASE_PACKAGES, *packages})
            debootstrap = _start_debootstrap(root, source, include, out)
            try:
                if python_version is not None:
                    _fetch_wheels(wheels, wanted, python_version, out)
            finally:
                status = debootstrap.wait()
            if status != 0:
                raise SandboxError(
                    f"debootstrap {source.suite} from {source.mirror} failed; see {log}"
                )
            if python_version is None:
                _fetch_wheels(wheels, wanted, chroot_python_version(root), out)
            _install_venv(root, wheels, requirements, out)
            _tidy(root)
            _import(root, tag, podman_env, out)


def build_plain(
    tag: str,
    source: Source,
    packages: Sequence[str],
    log: Path,
    podman_env: dict[str, str],
) -> None:
    """A Debian image with only `packages` (no Python, no venv): a tool-only image like
    those rules name with container: (the tests' samtools image)."""
    with tempfile.TemporaryDirectory(prefix="awsbatch-sandbox-rootfs-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "root"
        with open(log, "a") as out:
            if _start_debootstrap(root, source, sorted(packages), out).wait() != 0:
                raise SandboxError(
                    f"debootstrap {source.suite} from {source.mirror} failed; see {log}"
                )
            _tidy(root)
            _import(root, tag, podman_env, out, PLAIN_IMAGE_CHANGES)


def _start_debootstrap(
    root: Path, source: Source, include: Sequence[str], out: IO[str]
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(include)}",
            source.suite,
            str(root),
            source.mirror,
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def _fetch_wheels(
    wheels: Path, requirements: Sequence[str], python_version: str, out: IO[str]
) -> None:
    _run(_wheel_command(wheels, requirements, python_version), out, "pip wheel")


def _wheel_command(wheels: Path, requirements: Sequence[str], python_version: str) -> list[str]:
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels)]
    host_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if host_version != python_version:
        # Wheels built for the host's Python would not install in the image's Python:
        # download binary wheels for the image's version instead (`pip wheel` has no such
        # option; `pip download` does).
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--dest",
            str(wheels),
            "--only-binary=:all:",
            "--python-version",
            python_version,
        ]
    return [*command, *requirements]


def _install_venv(root: Path, wheels: Path, requirements: Sequence[str], out: IO[str]) -> None:
    shutil.copytree(wheels, root / "tmp" / "wheels")
    _chroot(root, ["python3", "-m", "venv", VENV], out)
    _chroot(
        root,
        [
            f"{VENV}/bin/pip",
            "install",
            "--quiet",
            "--no-index",
            "--no-cache-dir",
            "--find-links",
            "/tmp/wheels",
            *requirements,
        ],
        out,
    )


def _tidy(root: Path) -> None:
    """Drop what the image does not need: wheels, apt's downloads and lists."""
    shutil.rmtree(root / "tmp" / "wheels", ignore_errors=True)
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (root / cache).glob("*"):
            if entry.is_file():
                entry.unlink()
    (root / "work").mkdir(exist_ok=True)


def _import(
    root: Path,
    tag: str,
    podman_env: dict[str, str],
    out: IO[str],
    image_changes: Sequence[str] = IMAGE_CHANGES,
) -> None:
    changes = [arg for change in image_changes for arg in ("--change", change)]
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(root), "-c", "."],
        stdout=subprocess.PIPE,
        stderr=out,
    )
    try:
        imported = subprocess.run(
            ["podman", "import", *changes, "-", tag],
            stdin=tar.stdout,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=podman_env,
        )
    finally:
        assert tar.stdout is not None
        tar.stdout.close()
        tar.wait()
    if imported.returncode != 0 or tar.returncode != 0:
        raise SandboxError(f"podman import of the base image {tag} failed")


def chroot_python_version(root: Path) -> str:
    out = subprocess.run(
        [
            "chroot",
            str(root),
            "python3",
            "-c",
            "import sys; print(f'{sys.version_info.major}.{sys.version_info.minor}')",
        ],
        env=CHROOT_ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def _chroot(root: Path, argv: Sequence[str], out: IO[str]) -> None:
    _run(["chroot", str(root), *argv], out, argv[0], env=CHROOT_ENV)


def _run(argv: Sequence[str], out: IO[str], what: str, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(list(argv), stdout=out, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        raise SandboxError(f"{what} failed (exit {result.returncode}) while building the image")
