"""The sandbox's job image: what goes into it, the tags derived from that, build if missing.

Two layers of the job image, each cached in podman's image store under a tag hashed from its inputs:

- base  `localhost/snakemake-awsbatch-sandbox-base:<key>`: Debian (the machine's own apt
  mirror and suite) + Debian packages + a venv with the job side's Python packages at
  the versions of containers/requirements.txt, the lock the AWS job image installs (the
  Snakemake in it must be the one installed here). Built once (about two minutes), see
  rootfs.py.
- final `localhost/snakemake-awsbatch-sandbox:<key>`: base + this plugin from the current
  source tree. Rebuilt in seconds whenever a source file changes.

And the job runtime for rules' own tool images, `localhost/snakemake-awsbatch-runtime:<key>`,
built from the final image with containers/runtime.Dockerfile (ensure_runtime_image).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import snakemake_executor_plugin_awsbatch
from snakemake_executor_plugin_awsbatch import runtime
from snakemake_executor_plugin_awsbatch.sandbox import debian, podman, prereqs, rootfs
from snakemake_executor_plugin_awsbatch.sandbox.errors import SandboxError
from snakemake_executor_plugin_awsbatch.sandbox.state import StateDir

BASE_REPOSITORY = "localhost/snakemake-awsbatch-sandbox-base"
REPOSITORY = "localhost/snakemake-awsbatch-sandbox"
# The job runtime of tool-only images (runtime/__init__.py), tagged with its key.
RUNTIME_REPOSITORY = "localhost/snakemake-awsbatch-runtime"
DISTRIBUTION = "snakemake-executor-plugin-awsbatch"
# The example pipelines' tools, and Open MPI with Debian's python3 bindings for the
# multi-node parallel jobs' MPI programs (`mpirun ... /usr/bin/python3 prog.py`, as in
# containers/Dockerfile); `up --packages` or this variable replaces the list.
PACKAGES_ENV = "SNAKEMAKE_AWSBATCH_SANDBOX_PACKAGES"
DEFAULT_PACKAGES = ("bwa", "samtools", "bcftools", "openmpi-bin", "python3-mpi4py")
# Bump when the way the base is built changes, so old bases are not reused.
BUILDER_VERSION = "2"
# The job side's Python packages: containers/requirements.txt, the lock the AWS job image
# installs too, unless this variable names another requirements file (`make test-latest`).
REQUIREMENTS_ENV = "SNAKEMAKE_AWSBATCH_SANDBOX_REQUIREMENTS"
# The job's Snakemake must be the submitting side's, and so must what it loads with it.
MATCHED = ("snakemake", "snakemake-storage-plugin-s3")
MATCHED_PREFIX = "snakemake-interface-"

PACKAGE_DIR = Path(snakemake_executor_plugin_awsbatch.__file__).parent
# What the job image installs of this distribution: the plugin, and the scheduler the
# job's Snakemake runs with (jobside/plan_check.py); found, not imported, as importing it
# would import Snakemake.
PACKAGES = (PACKAGE_DIR, PACKAGE_DIR.parent / "snakemake_scheduler_plugin_awsbatch")
IMAGE_FILES = Path(__file__).parent / "image_files"


@dataclass(frozen=True)
class BaseSpec:
    source: debian.Source
    packages: tuple[str, ...]
    requirements: tuple[str, ...]  # name==version, from requirements_file
    python_version: str | None
    requirements_file: Path | None = None  # None: the pins are all there is

    @property
    def tag(self) -> str:
        inputs = [
            BUILDER_VERSION,
            self.source.mirror,
            self.source.suite,
            *self.packages,
            *self.requirements,
            str(self.python_version),
        ]
        return f"{BASE_REPOSITORY}:{_digest(inputs)}"


def base_spec(packages: Sequence[str] | None = None) -> BaseSpec:
    path = requirements_file()
    return BaseSpec(
        source=debian.host_source(),
        packages=tuple(sorted(set(packages if packages is not None else default_packages()))),
        requirements=job_requirements(path),
        python_version=image_python_version(),
        requirements_file=path,
    )


def default_packages() -> tuple[str, ...]:
    configured = os.environ.get(PACKAGES_ENV)
    return tuple(configured.split()) if configured is not None else DEFAULT_PACKAGES


def requirements_file() -> Path:
    """The job image's requirements: $SNAKEMAKE_AWSBATCH_SANDBOX_REQUIREMENTS, else the
    source tree's lock (like runtime.Dockerfile, it is not part of the wheel)."""
    configured = os.environ.get(REQUIREMENTS_ENV)
    path = Path(configured) if configured else PACKAGE_DIR.parent / "containers/requirements.txt"
    if not path.is_file():
        raise SandboxError(
            f"no {path}: the sandbox installs the job side's Python packages from the source "
            "tree's containers/requirements.txt; install the plugin from a source checkout "
            f"(pip install -e .) or name a requirements file in ${REQUIREMENTS_ENV}"
        )
    return path


def job_requirements(path: Path) -> tuple[str, ...]:
    """`name==version` of every requirement in the file (hashes and comments dropped),
    checked against this machine: the job side runs the Snakemake it runs."""
    pins = tuple(sorted(_pinned_lines(path)))
    for pin in pins:
        name, _, wanted = pin.partition("==")
        if name in MATCHED or name.startswith(MATCHED_PREFIX):
            installed = runtime.version(name)
            if installed != wanted:
                raise SandboxError(
                    f"the job image would run {name} {wanted} ({path}), this machine runs "
                    f"{installed}: install the locked versions (pip install -r "
                    "requirements/dev.txt, or `make venv`), or change the lock (make lock)"
                )
    return pins


def _pinned_lines(path: Path) -> Iterator[str]:
    for line in path.read_text().splitlines():
        requirement = line.split("#", 1)[0].split(";", 1)[0].strip().rstrip("\\").strip()
        if not requirement or requirement.startswith("-"):
            continue
        if "==" not in requirement:
            raise SandboxError(f"{path}: {requirement!r} is not pinned to one version (name==X)")
        name, _, version = requirement.partition("==")
        yield f"{name.strip().lower().replace('_', '-')}=={version.strip()}"


def image_python_version() -> str | None:
    """major.minor of the python3 the host's apt would install, or None if apt cannot say."""
    try:
        shown = subprocess.run(
            ["apt-cache", "show", "--no-all-versions", "python3"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    for line in shown.splitlines():
        if line.startswith("Version:"):
            # "3.11.2-1+b1" -> "3.11" (an epoch "1:" would precede it; Debian has none)
            return ".".join(line.split()[1].split(":")[-1].split(".")[:2])
    return None


def final_tag(base: BaseSpec) -> str:
    sources = [digest for package in PACKAGES for digest in _tree_digests(package)]
    return f"{REPOSITORY}:{_digest([base.tag, *sources])}"


def ensure_image(state: StateDir, packages: Sequence[str] | None = None, hold: bool = False) -> str:
    """The final image's tag, building whichever layer is missing.

    hold: keep the image from being removed while this sandbox runs (see podman.hold_image);
    done under the build lock so that no other build prunes it in between.
    """
    base = base_spec(packages)
    tag = final_tag(base)
    with _build_lock():
        if not podman.image_exists(state, base.tag):
            _build_base(state, base)
            _remove_older(state, BASE_REPOSITORY, keep=base.tag)
        if not podman.image_exists(state, tag):
            _build_final(state, base, tag)
            _remove_older(state, REPOSITORY, keep=tag)
        if hold:
            podman.hold_image(state, tag)
    return tag


def ensure_runtime_image(state: StateDir, job_image: str) -> str:
    """The job runtime image `RUNTIME_REPOSITORY:<key>` for tool-only images -> its key.

    Built from the job image with the Dockerfile users build theirs with on AWS
    (containers/runtime.Dockerfile), in seconds; its tag is the runtime's key, which
    changes with any job-side source file (runtime.key()).
    """
    key = runtime.key()
    tag = f"{RUNTIME_REPOSITORY}:{key}"
    with _build_lock():
        if not podman.image_exists(state, tag):
            print(f"building the job runtime image {tag}", file=sys.stderr, flush=True)
            with tempfile.TemporaryDirectory(prefix="awsbatch-sandbox-runtime-") as context:
                _podman_build(
                    state,
                    Path(context),
                    tag,
                    {"JOB_IMAGE": job_image, "KEY": key},
                    "--pull=never",
                    # No cached build stage: it would keep a copy of the job image.
                    "--layers=false",
                    "--file",
                    str(runtime_dockerfile()),
                )
            _remove_older(state, RUNTIME_REPOSITORY, keep=tag)
    return key


def runtime_dockerfile() -> Path:
    """containers/runtime.Dockerfile of the source tree (like the CloudFormation templates,
    it is not part of the wheel)."""
    path = PACKAGE_DIR.parent / "containers" / "runtime.Dockerfile"
    if not path.is_file():
        raise SandboxError(
            f"no {path}: the sandbox builds the job runtime with the source tree's "
            "containers/runtime.Dockerfile; install the plugin from a source checkout "
            "(pip install -e .)"
        )
    return path


def _remove_older(state: StateDir, repository: str, keep: str) -> None:
    """Remove superseded tags, so every source edit does not leave an image behind.

    podman refuses to remove an image a container uses, so the image of a running
    sandbox (held by podman.hold_image) stays.
    """
    listed = podman.podman(state, "images", "--format", "{{.Repository}}:{{.Tag}}", repository)
    older = [name for name in listed.stdout.split() if name != keep]
    if older:
        podman.podman(state, "rmi", *older, check=False)


def _build_base(state: StateDir, base: BaseSpec) -> None:
    prereqs.require(prereqs.BUILD_TOOLS)
    prereqs.require_root("building the sandbox's base image")
    log = state.logs / "image-build.log"
    print(
        f"building the base image {base.tag} from {base.source.mirror} {base.source.suite} "
        f"(once; about 2 minutes; log: {log})",
        file=sys.stderr,
        flush=True,
    )
    rootfs.build_base(
        base.tag,
        base.source,
        base.packages,
        base.requirements,
        base.requirements_file,
        base.python_version,
        log,
        podman.environment(state),
    )


def _build_final(state: StateDir, base: BaseSpec, tag: str) -> None:
    print(f"building the job image {tag} from {PACKAGE_DIR}", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="awsbatch-sandbox-image-") as tmp:
        context = Path(tmp)
        shutil.copytree(IMAGE_FILES, context, dirs_exist_ok=True)
        _write_source_tree(context / "src")
        _podman_build(state, context, tag, {"BASE": base.tag})


def _podman_build(
    state: StateDir, context: Path, tag: str, build_args: dict[str, str], *options: str
) -> None:
    """`podman build` of a local context; its base images are local, no registry is asked."""
    args = [arg for name, value in build_args.items() for arg in ("--build-arg", f"{name}={value}")]
    podman.podman(
        state, "build", "--quiet", "--network", "host", *options, *args, "--tag", tag, str(context)
    )


def _write_source_tree(dest: Path) -> None:
    """A minimal buildable tree: the package directory and a pyproject.toml naming it.

    Generated rather than copied, so it works the same from a git checkout and from an
    installed wheel; dependencies are in the base already (installed with --no-deps).
    """
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in PACKAGES:
        shutil.copytree(package, dest / package.name, ignore=ignore)
    names = ", ".join(f'"{package.name}"' for package in PACKAGES)
    (dest / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n\n'
        f'[project]\nname = "{DISTRIBUTION}"\nversion = "{_plugin_version()}"\n\n'
        f"[tool.hatch.build.targets.wheel]\npackages = [{names}]\n"
    )


def _plugin_version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def _tree_digests(root: Path) -> Iterator[str]:
    """One `path:sha256` per source file, in a stable order (the final layer's inputs)."""
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            relative = path.relative_to(root).as_posix()
            yield f"{relative}:{hashlib.sha256(path.read_bytes()).hexdigest()}"


def _digest(parts: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


@contextmanager
def _build_lock() -> Iterator[None]:
    """One build at a time on this machine: two sandboxes starting together share one build."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    lock = cache / "snakemake-awsbatch-sandbox" / "build.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
