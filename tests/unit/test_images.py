"""Which image a job runs in (images.py) and how a tool image's job starts (runtime/)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from snakemake_executor_plugin_awsbatch import runtime
from snakemake_executor_plugin_awsbatch.errors import ConfigError
from snakemake_executor_plugin_awsbatch.images import (
    job_image,
    parse_reference,
    without_container_methods,
)
from tests.unit.conftest import FakeJob

DEFAULT = "123456789012.dkr.ecr.us-east-1.amazonaws.com/snakemake-job:1"


@pytest.mark.parametrize(
    ("given", "reference"),
    [
        ("docker://quay.io/biocontainers/samtools:1.21--h50ea8bc_0", None),
        ("quay.io/biocontainers/samtools:1.21--h50ea8bc_0", None),
        ("ubuntu", None),
        ("library/ubuntu:24.04", None),
        ("localhost:5000/tools/bwa_mem2:2.2.1", None),
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/gatk:4.5", None),
        (f"docker://busybox@sha256:{'a' * 64}", f"busybox@sha256:{'a' * 64}"),
        (f"ghcr.io/org/tool:v1@sha256:{'0' * 64}", None),
    ],
)
def test_docker_references_are_accepted_without_their_scheme(given: str, reference) -> None:
    expected = reference or given.removeprefix("docker://")
    assert parse_reference(given, "Rule x: container:") == expected


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("docker://Quay.io/BioContainers/Samtools", "not a valid image reference"),
        ("quay.io/biocontainers/samtools:", "not a valid image reference"),
        ("quay.io//samtools", "not a valid image reference"),
        ("samtools:1.21 --rm", "not a valid image reference"),
        ("quay.io/samtools:-bad", "not a valid image reference"),
        ("busybox@sha256:abc", "not a valid image reference"),
        ("library://sylabs/default/alpine", "not an image in a Docker/OCI registry"),
        ("oras://ghcr.io/x/y:1", "not an image in a Docker/OCI registry"),
        ("/images/samtools.sif", "not an image in a Docker/OCI registry"),
        ("samtools.sif", "not an image in a Docker/OCI registry"),
        ("docker://" + "a" * 256, "not a valid image reference"),
    ],
)
def test_unusable_images_are_one_clear_line(given: str, says: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_reference(given, "Rule sort: container:")
    message = str(error.value)
    assert "\n" not in message and says in message
    assert message.startswith(f"Rule sort: container: {given!r}")


def test_the_resource_wins_over_the_directive_and_both_over_the_default() -> None:
    both = FakeJob(
        rule_name="a",
        resources={"awsbatch_image": "docker://quay.io/x/from-resource:1"},
        container_img_url="docker://quay.io/x/from-directive:1",
    )
    directive = FakeJob(rule_name="b", container_img_url="docker://quay.io/x/from-directive:1")
    plain = FakeJob(rule_name="c")
    opted_out = FakeJob(rule_name="d", container_img_url=False)  # container: None

    assert job_image(both, DEFAULT).reference == "quay.io/x/from-resource:1"
    assert job_image(directive, DEFAULT).reference == "quay.io/x/from-directive:1"
    assert job_image(directive, DEFAULT).tool
    assert job_image(plain, DEFAULT).reference == DEFAULT
    assert not job_image(plain, DEFAULT).tool
    assert job_image(opted_out, DEFAULT).reference == DEFAULT


def test_naming_the_default_image_is_not_a_tool_image() -> None:
    job = FakeJob(rule_name="a", container_img_url=f"docker://{DEFAULT}")
    assert not job_image(job, DEFAULT).tool


def test_a_rule_without_any_image_says_how_to_give_one() -> None:
    with pytest.raises(ConfigError, match=r"Rule align has no image: give it a container:"):
        job_image(FakeJob(rule_name="align"), None)
    # Without a default image, rules with their own image still run.
    assert job_image(FakeJob(container_img_url="alpine:3"), None).tool


def test_a_group_runs_in_its_rules_one_image_or_is_refused() -> None:
    same = [FakeJob(rule_name=r, container_img_url="quay.io/x/tools:1") for r in "ab"]
    group = SimpleNamespace(name="g1", jobs=same, is_group=lambda: True)
    assert job_image(group, DEFAULT).reference == "quay.io/x/tools:1"

    mixed = [*same, FakeJob(rule_name="c", container_img_url="quay.io/x/other:2")]
    group = SimpleNamespace(name="g1", jobs=mixed, is_group=lambda: True)
    with pytest.raises(ConfigError) as error:
        job_image(group, DEFAULT)
    message = str(error.value)
    assert "quay.io/x/tools:1 (rule a)" in message and "quay.io/x/other:2 (rule c)" in message


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            "python -m snakemake --software-deployment-method apptainer conda --cores 1",
            "python -m snakemake --software-deployment-method conda --cores 1",
        ),
        (
            "python -m snakemake --software-deployment-method apptainer --cores 1",
            "python -m snakemake --cores 1",
        ),
        (
            "python -m snakemake --cores 1 --software-deployment-method singularity",
            "python -m snakemake --cores 1",
        ),
        ("python -m snakemake --cores 1", "python -m snakemake --cores 1"),
        (  # how Snakemake forwards the setting to a job
            "python -m snakemake --deployment-method apptainer --cores 1",
            "python -m snakemake --cores 1",
        ),
        (
            "python -m snakemake --sdm conda apptainer --cores 1",
            "python -m snakemake --sdm conda --cores 1",
        ),
        (
            "python -m snakemake --software-deployment-method conda env-modules --x",
            "python -m snakemake --software-deployment-method conda env-modules --x",
        ),
    ],
)
def test_jobs_never_start_apptainer(command: str, expected: str) -> None:
    assert without_container_methods(command) == expected


def test_the_runtime_key_names_snakemake_and_the_plugin_and_changes_with_the_sources(
    tmp_path: Path,
) -> None:
    import snakemake

    key = runtime.key()
    assert runtime.is_key(key)
    assert key.startswith(f"snakemake{snakemake.__version__}-awsbatch")

    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "a.py").write_text("A = 1\n")
    (package / "sub" / "b.py").write_text("B = 1\n")
    (package / "notes.txt").write_text("not code")
    before = runtime.source_digest(package)
    (package / "notes.txt").write_text("still not code")
    assert runtime.source_digest(package) == before
    (package / "sandbox").mkdir()
    (package / "sandbox" / "moto.py").write_text("never in a job\n")
    assert runtime.source_digest(package) == before
    (package / "sub" / "b.py").write_text("B = 2\n")
    assert runtime.source_digest(package) != before


def _mount_with_runtime(tmp_path: Path, key: str) -> Path:
    """A stand-in for the instance's runtimes: bin/python3 prints how it was started."""
    mount = tmp_path / "mount"
    python = mount / key / runtime.PYTHON
    python.parent.mkdir(parents=True)
    python.write_text('#!/bin/sh\necho "started $0 with: $*"\n')
    python.chmod(0o755)
    return mount


def test_the_launcher_starts_the_runtimes_python_on_the_runner(tmp_path: Path) -> None:
    key = "snakemake9.0.0-awsbatch0.1.0-abc"
    mount = _mount_with_runtime(tmp_path, key)
    command = runtime.launcher_command(key, ["s3://b/m.json", "--image", "x y"], str(mount))
    assert command[:2] == ["/bin/sh", "-c"]

    result = subprocess.run(command, capture_output=True, text=True, env={"PATH": "/bin"})

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"started {mount}/{key}/bin/python3 with: -m snakemake_executor_plugin_awsbatch.jobside "
        f"--runtime {mount}/{key} s3://b/m.json --image x y"
    )


def test_an_instance_without_the_runtime_fails_the_job_with_one_line(tmp_path: Path) -> None:
    mount = _mount_with_runtime(tmp_path, "snakemake9.0.0-awsbatch0.1.0-old")
    command = runtime.launcher_command("snakemake9.0.0-awsbatch0.1.0-new", ["s3://b/m"], str(mount))

    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ))

    assert result.returncode == runtime.MISSING_EXIT_CODE
    (line,) = result.stderr.splitlines()
    assert "has no job runtime snakemake9.0.0-awsbatch0.1.0-new" in line
    assert "(it has: snakemake9.0.0-awsbatch0.1.0-old )" in line
    assert "docs/tool-images.md" in line
