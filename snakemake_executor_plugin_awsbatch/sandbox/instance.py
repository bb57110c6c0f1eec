"""The sandbox's instance: what a Batch host's boot script does on AWS, done on this machine.

On AWS every Batch host runs its launch template's user data at first boot. One part of
it, `snakemake-awsbatch-runtime.sh`, installs the job runtimes that rules' own tool images
run with (cloudformation/launch-template.yaml, runtime/__init__.py). The sandbox's jobs
all run on this machine, its one instance; `up` reads that part back from the launch
template its compute environments use (deployed into moto from the same template) and
runs it here with podman for docker. The other part (scratch disks, hyperthreading, the
ECS agent's settings) is about the host's hardware and stays on AWS.
"""

from __future__ import annotations

import base64
import email
import subprocess
from collections.abc import Iterable
from typing import Any

from snakemake_executor_plugin_awsbatch.sandbox import podman
from snakemake_executor_plugin_awsbatch.sandbox.errors import SandboxError
from snakemake_executor_plugin_awsbatch.sandbox.state import StateDir

RUNTIME_PART = "snakemake-awsbatch-runtime.sh"
INSTALL_TIMEOUT = 600


def install_runtimes(session: Any, state: StateDir, compute_environments: Iterable[str]) -> None:
    """Run the runtime part of every launch template the compute environments boot with."""
    for user_data in _user_data(session, compute_environments):
        script = runtime_part(user_data)
        if script is None:
            raise SandboxError(
                f"the launch template's user data has no part {RUNTIME_PART}; "
                "cloudformation/launch-template.yaml and the sandbox disagree"
            )
        _run(script, state)


def _user_data(session: Any, compute_environments: Iterable[str]) -> list[bytes]:
    batch, ec2 = session.client("batch"), session.client("ec2")
    described = batch.describe_compute_environments(
        computeEnvironments=sorted(set(compute_environments))
    )["computeEnvironments"]
    templates = set()
    for env in described:
        spec = (env.get("computeResources") or {}).get("launchTemplate") or {}
        if spec.get("launchTemplateId"):
            templates.add((spec["launchTemplateId"], str(spec.get("version", "$Default"))))
    found = []
    for template, version in sorted(templates):
        versions = ec2.describe_launch_template_versions(
            LaunchTemplateId=template, Versions=[version]
        )["LaunchTemplateVersions"]
        data = versions[0]["LaunchTemplateData"].get("UserData")
        if data:
            found.append(base64.b64decode(data))
    if not found:
        raise SandboxError("the sandbox's compute environments have no launch template user data")
    return found


def runtime_part(user_data: bytes) -> str | None:
    """The shell script of the MIME part named RUNTIME_PART, if the user data has one."""
    message = email.message_from_bytes(user_data)
    for part in message.walk():
        if part.get_filename() == RUNTIME_PART:
            payload = part.get_payload(decode=True)
            return payload.decode() if isinstance(payload, bytes) else None
    return None


def _run(script: str, state: StateDir) -> None:
    log = state.logs / "host.log"
    path = state.root / RUNTIME_PART
    path.write_text(script)
    env = {**podman.environment(state), "CONTAINER_CLI": "podman", "HOST_LOG": str(log)}
    try:
        result = subprocess.run(
            ["bash", str(path)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=INSTALL_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise SandboxError(f"installing the job runtimes took over {INSTALL_TIMEOUT} s") from None
    if result.returncode != 0:
        raise SandboxError(f"installing the job runtimes failed: {_last_line(log)} (see {log})")


def _last_line(path: Any) -> str:
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1] if lines else "no log"
