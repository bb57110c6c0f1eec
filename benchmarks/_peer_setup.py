"""What the peers need before they can run on the sandbox: their virtualenvs, their job
images, and (aws-basic-batch) a job definition registered beforehand.

Each peer gets a venv of its own under benchmarks/.venvs/ (git-ignored), with the
Snakemake and snakemake-storage-plugin-s3 versions of the project's .venv and the peer's
latest release, all from the package index through the machine's pip configuration.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VENVS = Path(__file__).resolve().parent / ".venvs"
STORAGE_PLUGIN = "snakemake-storage-plugin-s3"
# Distribution names whose versions are reported for every venv.
REPORTED = (
    "snakemake",
    STORAGE_PLUGIN,
    "boto3",
    "snakemake-executor-plugin-awsbatch",
    "snakemake-executor-plugin-aws-batch",
    "snakemake-executor-plugin-aws-basic-batch",
)
OFFICIAL_IMAGE = "localhost/peers-aws-batch-job"
BASIC_IMAGE = "localhost/peers-aws-basic-batch-job"
# The image's own certificate file, so Debian's bundle in the image stays as it is.
IMAGE_CA_PATH = "/etc/ssl/certs/peers-pip-ca.pem"


@dataclass(frozen=True)
class Venv:
    name: str  # the executor's name
    package: str  # the executor plugin's distribution on the package index

    @property
    def path(self) -> Path:
        return VENVS / self.name

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"


PEER_VENVS = {
    "aws-batch": Venv("aws-batch", "snakemake-executor-plugin-aws-batch"),
    "aws-basic-batch": Venv("aws-basic-batch", "snakemake-executor-plugin-aws-basic-batch"),
}


def host_versions() -> dict[str, str]:
    """Versions in the project's venv (the one running this script)."""
    found = {}
    for name in REPORTED:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


def venv_versions(venv: Venv) -> dict[str, str]:
    """Versions installed in a peer's venv; {} when the venv does not exist yet."""
    if not venv.python.exists():
        return {}
    probe = (
        "import importlib.metadata as m, json\n"
        f"names = {list(REPORTED)!r}\n"
        "found = {}\n"
        "for n in names:\n"
        "    try: found[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(found))\n"
    )
    done = subprocess.run(
        [str(venv.python), "-c", probe], capture_output=True, text=True, check=False
    )
    return json.loads(done.stdout) if done.returncode == 0 else {}


def ensure_venv(venv: Venv, wanted: dict[str, str]) -> dict[str, str]:
    """Create or complete the peer's venv (idempotent); -> the versions in it.

    Snakemake and the storage plugin are pinned to the project venv's versions, so every
    plugin runs the same Snakemake; the peer itself is its latest release.
    """
    have = venv_versions(venv)
    pinned = {name: wanted[name] for name in ("snakemake", STORAGE_PLUGIN)}
    if venv.package in have and all(have.get(k) == v for k, v in pinned.items()):
        return have
    if not venv.python.exists():
        print(f"creating {venv.path}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv.path)], check=True)
    requirements = [*(f"{k}=={v}" for k, v in pinned.items()), venv.package]
    print(f"installing into {venv.path}: {' '.join(requirements)}", flush=True)
    subprocess.run([str(venv.python), "-m", "pip", "install", "--quiet", *requirements], check=True)
    return venv_versions(venv)


# -- job images -----------------------------------------------------------------------


def _podman(containers_conf: Path, *args: str, check: bool = True) -> str:
    """podman with the sandbox's configuration (docs/sandbox.md: CONTAINERS_CONF)."""
    done = subprocess.run(
        ["podman", *args],
        env={**os.environ, "CONTAINERS_CONF": str(containers_conf)},
        capture_output=True,
        text=True,
        check=False,
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"podman {shlex.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def _build(containers_conf: Path, tag: str, base: str, files: dict[str, bytes]) -> str:
    """Build tag FROM base with files (path in context -> content) unless it exists."""
    exists = subprocess.run(
        ["podman", "image", "exists", tag],
        env={**os.environ, "CONTAINERS_CONF": str(containers_conf)},
        check=False,
    )
    if exists.returncode == 0:
        return tag
    with tempfile.TemporaryDirectory(prefix="peers-image-") as tmp:
        for rel, content in files.items():
            (Path(tmp) / rel).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / rel).write_bytes(content)
        # The base is in the local store: nothing is pulled, no network is needed.
        _podman(containers_conf, "build", "--quiet", "--build-arg", f"BASE={base}", "-t", tag, tmp)
    print(f"built {tag}", flush=True)
    return tag


def _tag(repository: str, *parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return f"{repository}:{digest.hexdigest()[:16]}"


def pip_settings_for_jobs() -> tuple[str, bytes | None]:
    """A pip.conf for job containers with what this machine's pip needs to reach its index.

    Taken from `pip config list` (files and PIP_* variables): the CA bundle (`cert`), and
    index/trusted-host settings if any. Local find-links and file:// indexes are left out:
    their paths do not exist in a container. -> (pip.conf text, CA bundle bytes or None).
    """
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    settings: dict[str, str] = {}
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        name = key.rsplit(".", 1)[-1]
        settings[name] = value.strip().strip("'\"")
    lines = ["[global]"]
    ca = None
    if settings.get("cert") and Path(settings["cert"]).is_file():
        ca = Path(settings["cert"]).read_bytes()
        lines.append(f"cert = {IMAGE_CA_PATH}")
    for name in ("index-url", "extra-index-url", "trusted-host"):
        remote = [v for v in settings.get(name, "").split() if not v.startswith("file:")]
        if remote:
            lines.append(f"{name} = {' '.join(remote)}")
    return "\n".join(lines) + "\n", ca


def official_image(containers_conf: Path, base: str) -> str:
    """The sandbox's job image plus this machine's pip settings.

    snakemake-executor-plugin-aws-batch 0.2.1 sets auto_deploy_default_storage_provider,
    so every job starts with `pip install --target .snakemake/pip-deployments
    snakemake-storage-plugin-s3` (pip reinstalls into a --target whatever the image has).
    On AWS that needs egress to the package index; here the container needs the
    machine's CA bundle, without which pip fails with CERTIFICATE_VERIFY_FAILED.
    """
    conf, ca = pip_settings_for_jobs()
    files = {"pip.conf": conf.encode()}
    steps = ["ARG BASE", "FROM ${BASE}", "COPY pip.conf /etc/pip.conf"]
    if ca is not None:
        files["ca.pem"] = ca
        steps.append(f"COPY ca.pem {IMAGE_CA_PATH}")
    files["Containerfile"] = ("\n".join(steps) + "\n").encode()
    tag = _tag(OFFICIAL_IMAGE, base, *files.values())
    return _build(containers_conf, tag, base, files)


def basic_image(containers_conf: Path, base: str, workflow: Path) -> str:
    """The sandbox's job image with the workflow at its WORKDIR (/work).

    snakemake-executor-plugin-aws-basic-batch sets job_deploy_sources=False: its docs
    require the Snakefile (and scripts, configs) to be baked into the image; the job's
    Snakemake is told `--snakefile Snakefile` relative to the container's WORKDIR.
    """
    files = {f"workflow/{p.relative_to(workflow)}": p.read_bytes() for p in _files(workflow)}
    steps = "ARG BASE\nFROM ${BASE}\nCOPY workflow/ /work/\n"
    files["Containerfile"] = steps.encode()
    tag = _tag(BASIC_IMAGE, base, *sorted(files), *files.values())
    return _build(containers_conf, tag, base, files)


def _files(workflow: Path) -> list[Path]:
    return sorted(p for p in workflow.rglob("*") if p.is_file())


def remove_images(containers_conf: Path, tags: list[str]) -> None:
    """Best effort: podman keeps an image that a (stopped) job container still uses."""
    if tags:
        _podman(containers_conf, "rmi", *tags, check=False)


# -- the job definition aws-basic-batch runs on --------------------------------------


def basic_job_definition(batch: Any, name: str, image: str) -> str:
    """`name:revision` of an ACTIVE definition running image; registered if missing.

    Registered the way the peer's docs ask (Terraform/CloudFormation/console in real
    life): a container definition with the image and default vCPU/memory, which the
    plugin overrides per job through containerOverrides.
    """
    found = batch.describe_job_definitions(jobDefinitionName=name, status="ACTIVE")
    for d in found["jobDefinitions"]:
        if d.get("containerProperties", {}).get("image") == image:
            return f"{d['jobDefinitionName']}:{d['revision']}"
    made = batch.register_job_definition(
        jobDefinitionName=name,
        type="container",
        platformCapabilities=["EC2"],
        containerProperties={
            "image": image,
            "command": ["true"],
            "resourceRequirements": [
                {"type": "VCPU", "value": "1"},
                {"type": "MEMORY", "value": "1024"},
            ],
        },
    )
    return f"{made['jobDefinitionName']}:{made['revision']}"
