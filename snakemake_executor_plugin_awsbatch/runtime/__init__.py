"""The job runtime: what a rule's own tool image borrows from the instance to run as a job.

A tool-only image (samtools from biocontainers, a static busybox) holds no Python and no
Snakemake. Such a job runs, read-only from the instance, a self-contained runtime: a
Python with its own dynamic loader and libraries (any libc in the image, or none), the
Snakemake and storage plugin the submitting side runs, and this plugin's job-side runner.

The contract between its three parties, all named here:

- the builder (`bundle.py`, `containers/runtime.Dockerfile`) makes the tree
  `/.snakemake-awsbatch/<key>/` and puts it into a runtime image `<repository>:<key>`;
- the instance (the launch template's user data, `cloudformation/launch-template.yaml`)
  copies `<key>/` out of that image into `<runtime root>/<key>/` once per instance, and
  its compute environment says which keys it has in the EC2 tag `RUNTIMES_TAG`;
- the plugin mounts `<runtime root>` read-only at `MOUNT` in the job's container and runs
  `launcher_command(key, ...)`, which starts the runtime's Python on the runner.

`MOUNT` is a hidden top-level directory no image has, so the mount shadows nothing of
the image, and nothing of the runtime reaches the rule's environment: the runtime's Python
finds its libraries through its own ELF interpreter and RPATH, and its modules through a
`._pth` file (no LD_LIBRARY_PATH, PYTHONPATH or PATH entry is set).

This module imports nothing beyond the standard library: the runtime's own Python loads
it at job start, and the builder runs before any plugin dependency may be importable.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
from pathlib import Path

# Where the instance's runtimes appear inside a job's container (read-only).
MOUNT = "/.snakemake-awsbatch"
# Where the launch template installs them on the instance (the stack's RuntimeRoot).
DEFAULT_ROOT = "/opt/snakemake-awsbatch/runtimes"
# The compute environment's EC2 tag (computeResources.tags) listing the keys its
# instances install, separated by spaces.
RUNTIMES_TAG = "snakemake-awsbatch-runtimes"
# The runtime's Python, relative to its tree.
PYTHON = "bin/python3"
# Written by the builder into the tree: what it holds (versions, size).
DESCRIPTION = "RUNTIME.json"
DISTRIBUTION = "snakemake-executor-plugin-awsbatch"
# A key is a Docker tag, a directory name and part of an EC2 tag value.
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_NOT_IN_KEY = re.compile(r"[^A-Za-z0-9_.-]")
_PACKAGE_DIR = Path(__file__).resolve().parents[1]


def key() -> str:
    """The key of the runtime this installation's jobs need.

    It names the Snakemake version (the job's Snakemake must be the submitting side's),
    this plugin's version and a digest of the plugin's Python sources, so that a runtime
    built from other job-side code never passes for this one.
    """
    named = f"snakemake{version('snakemake')}-awsbatch{version(DISTRIBUTION)}"
    # A local version ("9.21.1.dev3+g1a2b3c") has characters no Docker tag may hold.
    return f"{_NOT_IN_KEY.sub('_', named)}-{source_digest()[:12]}"


def is_key(value: str) -> bool:
    return bool(_KEY.match(value))


def source_digest(package_dir: Path = _PACKAGE_DIR) -> str:
    """SHA-256 over the package's `*.py` files (relative path and content, sorted), but
    the local sandbox's, which no job runs."""
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        relative = path.relative_to(package_dir).parts
        if "__pycache__" in relative or relative[0] == "sandbox":
            continue
        digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "0"


# Run by the image's /bin/sh: $0 is the key, "$@" the runner's arguments. A missing
# runtime fails with one line naming what the instance has instead.
_LAUNCHER = (
    'r="{mount}/$0"; '
    'if [ ! -x "$r/{python}" ]; then '
    'echo "snakemake-awsbatch: this instance has no job runtime $0 in {mount} '
    '(it has: $(ls {mount} 2>/dev/null | tr "\\n" " ")); deploy it as docs/tool-images.md '
    'says, or run the rule in the default image" >&2; exit {code}; fi; '
    'exec "$r/{python}" -m snakemake_executor_plugin_awsbatch.jobside --runtime "$r" "$@"'
)
# The runner's EXIT_SETUP: the job could not start its work.
MISSING_EXIT_CODE = 2


def launcher_command(runtime_key: str, runner_args: list[str], mount: str = MOUNT) -> list[str]:
    """The container command of a job in a tool-only image."""
    script = _LAUNCHER.format(mount=mount, python=PYTHON, code=MISSING_EXIT_CODE)
    return ["/bin/sh", "-c", script, runtime_key, *runner_args]
