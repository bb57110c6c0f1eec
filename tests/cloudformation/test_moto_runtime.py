"""Job runtimes for tool-only images (docs/tool-images.md), deployed into moto: the tag on
every compute environment, the root outputs, and the user data part that installs the
runtimes, taken from the deployed launch template and run with bash against a fake container
CLI (the way the local sandbox runs it with podman). (A module of its own: moto's in-process
state is shared by every active `mock_aws`, so this deployment must not overlap another.)"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from moto import mock_aws

from snakemake_executor_plugin_awsbatch.stack import read_stack_outputs
from tests.cloudformation.conftest import RUNTIME_SCRIPT, Deployment, deploy
from tests.cloudformation.test_moto_deploy import environments

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
REPOSITORY = f"{REGISTRY}/snakemake-awsbatch-runtime"
# PRESENT's image is already on the host (as in the sandbox); PULLED's must be pulled.
PRESENT = "snakemake9.21.0-awsbatch0.1.0-90c0b065ddaf"
PULLED = "snakemake9.22.0-awsbatch0.2.0-0123456789ab"
TAG = "snakemake-awsbatch-runtimes"

needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")

# A container CLI with the subcommands the script uses. Images and containers are files
# below $FAKE_STATE; every call is appended to $FAKE_STATE/calls. FAKE_PULL_FAIL (an image),
# FAKE_CP_FAIL and FAKE_CP_NO_PYTHON (keys) make those steps fail.
FAKE_CLI = r"""#!/bin/bash
state="$FAKE_STATE"
printf '%s\n' "cli $*" >> "$state/calls"
case "$1" in
  image)
    [ "$2" = inspect ] && grep -qxF "$3" "$state/images" ;;
  login)
    cat > "$state/password" ;;
  pull)
    if [ "$2" = "${FAKE_PULL_FAIL:-}" ]; then
      echo "Error: manifest unknown: $2" >&2
      exit 1
    fi
    echo "$2" >> "$state/images" ;;
  create)
    grep -qxF "$2" "$state/images" || { echo "Error: no such image: $2" >&2; exit 1; }
    cid="fake$(wc -l < "$state/calls" | tr -d ' ')"
    echo "$2" > "$state/container-$cid"
    echo "$cid" ;;
  cp)
    cid="${2%%:*}" source="${2#*:}"
    key="${source##*/}"
    [ -f "$state/container-$cid" ] || { echo "Error: no container $cid" >&2; exit 1; }
    mkdir -p "$3/$key/bin" "$3/$key/lib"
    if [ "$key" = "${FAKE_CP_FAIL:-}" ]; then
      echo "Error: copying from container: no space left on device" >&2
      exit 1
    fi
    if [ "$key" != "${FAKE_CP_NO_PYTHON:-}" ]; then
      printf '#!/bin/sh\necho python\n' > "$3/$key/bin/python3"
      chmod 700 "$3/$key/bin/python3" "$3/$key"
    fi ;;
  rm)
    rm "$state/container-$2" ;;
  rmi)
    grep -vxF "$2" "$state/images" > "$state/images.new"
    mv "$state/images.new" "$state/images" ;;
  *)
    echo "fake container CLI: unexpected call: $*" >&2
    exit 2 ;;
esac
"""
FAKE_AWS = r"""#!/bin/bash
printf '%s\n' "aws $*" >> "$FAKE_STATE/calls"
[ "$*" = "ecr get-login-password --region us-east-1" ] && echo fake-password
"""


@pytest.fixture(scope="module")
def runtime_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("host") / "runtimes"


@pytest.fixture(scope="module")
def runtime_env(aws_credentials: None, runtime_root: Path) -> Iterator[Deployment]:
    """Two runtime keys, an own RuntimeRoot and the multi-node environment."""
    with mock_aws():
        yield deploy(
            {
                "RuntimeRepository": REPOSITORY,
                "RuntimeKeys": f"{PRESENT},{PULLED}",
                "RuntimeRoot": str(runtime_root),
                "CreateMultiNodeEnvironment": "true",
            },
            stack_name="rt",
        )


@dataclass
class Host:
    """The runtime script of the deployed launch template, and a fake host to run it on."""

    script: Path
    root: Path
    state: Path
    bin: Path
    log: Path

    def run(self, **extra: str) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(self.state),
            "CONTAINER_CLI": str(self.bin / "container-cli"),
            "HOST_LOG": str(self.log),
            "FAKE_STATE": str(self.state),
            "PULL_RETRY_DELAY": "0",
            **extra,
        }
        return subprocess.run(
            ["bash", str(self.script)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def calls(self) -> list[list[str]]:
        path = self.state / "calls"
        return [line.split() for line in path.read_text().splitlines()] if path.exists() else []

    def images(self) -> list[str]:
        return (self.state / "images").read_text().split()

    def containers(self) -> list[str]:
        return sorted(p.name for p in self.state.glob("container-*"))

    def installed(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir())


@pytest.fixture
def host(runtime_env: Deployment, runtime_root: Path, tmp_path: Path) -> Host:
    """RuntimeRoot is fixed by the deployment, so it is emptied for every test."""
    if runtime_root.exists():
        shutil.rmtree(runtime_root)
    script = tmp_path / RUNTIME_SCRIPT
    script.write_text(runtime_env.user_data_parts()[RUNTIME_SCRIPT])
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    for name, text in (("container-cli", FAKE_CLI), ("aws", FAKE_AWS)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (state / "images").write_text(f"{REPOSITORY}:{PRESENT}\n")
    return Host(script, runtime_root, state, bin_dir, tmp_path / "host.log")


# --- the deployment -------------------------------------------------------------------------


def test_every_compute_environment_carries_the_runtime_tag(runtime_env: Deployment) -> None:
    envs = environments(runtime_env)
    assert len(envs) == 3  # spot, on-demand, multi-node
    for env in envs.values():
        assert env["computeResources"]["tags"][TAG] == f"{PRESENT} {PULLED}"


def test_root_outputs_name_the_runtime_root_and_keys(
    runtime_env: Deployment, runtime_root: Path
) -> None:
    out = runtime_env.outputs()
    assert out["RuntimeRoot"] == str(runtime_root)
    assert out["RuntimeKeys"] == f"{PRESENT} {PULLED}"
    stack = read_stack_outputs(runtime_env.client("cloudformation"), "rt")
    assert stack.runtime_root == str(runtime_root)
    assert stack.settings()["runtime_root"] == str(runtime_root)


def test_user_data_has_the_runtime_part_after_the_host_setup(
    runtime_env: Deployment, runtime_root: Path
) -> None:
    parts = runtime_env.user_data_parts()
    assert list(parts) == [None, RUNTIME_SCRIPT]
    assert "SCRATCH=/scratch" in parts[None]
    assert parts[RUNTIME_SCRIPT].startswith(
        "#!/bin/bash\n"
        f'RUNTIME_REPOSITORY="{REPOSITORY}"\n'
        f'RUNTIME_KEYS="{PRESENT} {PULLED}"\n'
        f'RUNTIME_ROOT="{runtime_root}"\n'
    )


# --- the runtime script, run ------------------------------------------------------------------


@needs_bash
def test_runtime_script_installs_every_key(host: Host) -> None:
    result = host.run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert host.installed() == sorted([PRESENT, PULLED])  # no .incoming-* left
    for key in (PRESENT, PULLED):
        tree = host.root / key
        assert stat.S_IMODE(tree.stat().st_mode) == 0o755
        python = tree / "bin" / "python3"
        assert stat.S_IMODE(python.stat().st_mode) & 0o555 == 0o555  # any job user runs it
        assert f"snakemake-awsbatch: installed job runtime {key} in {tree}" in result.stdout
    assert stat.S_IMODE(host.root.stat().st_mode) == 0o755
    calls = host.calls()
    # ECR: log in once (instance role credentials), then pull only the missing image.
    assert ["aws", "ecr", "get-login-password", "--region", "us-east-1"] in calls
    assert ["cli", "login", "--username", "AWS", "--password-stdin", REGISTRY] in calls
    assert (host.state / "password").read_text().strip() == "fake-password"
    assert [c[2] for c in calls if c[1] == "pull"] == [f"{REPOSITORY}:{PULLED}"]
    for key in (PRESENT, PULLED):
        image = f"{REPOSITORY}:{key}"
        assert ["cli", "create", image, "/nonexistent"] in calls
    # The pulled image is removed again; the one that was there before is kept.
    assert [c[2:] for c in calls if c[1] == "rmi"] == [[f"{REPOSITORY}:{PULLED}"]]
    assert host.images() == [f"{REPOSITORY}:{PRESENT}"]
    assert host.containers() == []
    assert result.stdout in host.log.read_text()


@needs_bash
def test_runtime_script_second_run_does_nothing(host: Host) -> None:
    assert host.run().returncode == 0
    before = len(host.calls())
    again = host.run()
    assert again.returncode == 0, again.stdout + again.stderr
    assert host.calls()[before:] == []  # no inspect, pull, create or cp
    for key in (PRESENT, PULLED):
        assert f"job runtime {key} is already installed" in again.stdout
    assert host.installed() == sorted([PRESENT, PULLED])


@needs_bash
def test_runtime_script_failed_copy_leaves_nothing_behind(host: Host) -> None:
    result = host.run(FAKE_CP_FAIL=PRESENT)
    assert result.returncode != 0
    assert host.installed() == [PULLED]  # the next key is still installed
    line = next(
        line
        for line in host.log.read_text().splitlines()
        if line.startswith(f"snakemake-awsbatch: could not install job runtime {PRESENT} ")
    )
    assert line.startswith(
        f"snakemake-awsbatch: could not install job runtime {PRESENT} from {REPOSITORY}:{PRESENT}: "
    )
    assert line.endswith("no space left on device")
    # a later key succeeded, so the reason is repeated last (the sandbox reports that line)
    assert host.log.read_text().splitlines()[-1] == line
    assert host.containers() == []
    assert host.images() == [f"{REPOSITORY}:{PRESENT}"]


@needs_bash
def test_runtime_script_refuses_an_image_without_python(host: Host) -> None:
    result = host.run(FAKE_CP_NO_PYTHON=PULLED)
    assert result.returncode != 0
    assert host.installed() == [PRESENT]
    assert (
        f"could not install job runtime {PULLED} from {REPOSITORY}:{PULLED}: "
        f"the image has no executable /.snakemake-awsbatch/{PULLED}/bin/python3"
    ) in host.log.read_text()
    assert host.images() == [f"{REPOSITORY}:{PRESENT}"]  # the pulled image is removed too
    assert host.containers() == []


@needs_bash
def test_runtime_script_failed_pull_is_retried_then_reported(host: Host) -> None:
    image = f"{REPOSITORY}:{PULLED}"
    result = host.run(FAKE_PULL_FAIL=image, PULL_ATTEMPTS="3")
    assert result.returncode != 0
    assert [c for c in host.calls() if c[1] == "pull"] == [["cli", "pull", image]] * 3
    assert not any(c[1:3] == ["create", image] for c in host.calls())
    assert host.installed() == [PRESENT]
    assert (
        f"snakemake-awsbatch: could not install job runtime {PULLED} from {image}: "
    ) in result.stdout
    assert f"manifest unknown: {image}" in host.log.read_text()
