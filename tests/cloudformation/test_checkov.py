"""checkov: no failed check; every skip is declared, justified and still needed.

checkov lives in its own virtualenv (`make checkov-venv` creates .venv-checkov) because its
pinned dependencies would conflict with the main one. checkov evaluates each template
alone and drops resources whose Condition is false with the parameter defaults, so the
templates are scanned twice: as they are, and with every optional feature switched on.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.cloudformation.conftest import REPO, TEMPLATES, template

_EFS = "arn:aws:elasticfilesystem:us-east-1:123456789012"
_BATCH = "arn:aws:batch:us-east-1:123456789012"
_RUNTIME_REPOSITORY = "123456789012.dkr.ecr.us-east-1.amazonaws.com/snakemake-awsbatch-runtime"
_RUNTIME_KEY = "snakemake9.21.0-awsbatch0.1.0-90c0b065ddaf"
# Parameter defaults replaced in the "everything on" copy (file -> parameter -> default).
EVERYTHING_ON = {
    "network.yaml": {"CreateInterfaceEndpoints": '"true"'},
    "storage.yaml": {"CreateEfs": '"true"'},
    "iam.yaml": {
        "CreateServiceRole": '"true"',
        "EfsFileSystemArn": f"{_EFS}:file-system/fs-0123abcd",
        "EfsAccessPointArn": f"{_EFS}:access-point/fsap-0123abcd",
    },
    "launch-template.yaml": {
        "DisableHyperthreading": '"true"',
        "RuntimeRepository": _RUNTIME_REPOSITORY,
        "RuntimeKeys": _RUNTIME_KEY,
    },
    "compute-environments.yaml": {
        "CreateMultiNodeEnvironment": '"true"',
        "RuntimeRepository": _RUNTIME_REPOSITORY,
        "RuntimeKeys": _RUNTIME_KEY,
    },
    "job-queues.yaml": {"MultiNodeComputeEnvironmentArn": f"{_BATCH}:compute-environment/mn"},
}


def checkov_binary() -> Path | None:
    configured = os.environ.get("CHECKOV")
    candidates = [Path(configured)] if configured else []
    candidates.append(REPO / ".venv-checkov" / "bin" / "checkov")
    return next((path for path in candidates if path.exists()), None)


def everything_on_copy(target: Path) -> Path:
    target.mkdir()
    for path in TEMPLATES.glob("*.yaml"):
        text = path.read_text()
        for name, value in EVERYTHING_ON.get(path.name, {}).items():
            pattern = rf"(\n  {name}:\n(?:    .*\n)*?    Default: ).*\n"
            text, count = re.subn(pattern, rf"\g<1>{value}\n", text)
            assert count == 1, f"{path.name}: no default for {name}"
        (target / path.name).write_text(text)
    return target


def declared_skips() -> dict[tuple[str, str, str], str]:
    """(file, resource, check id) -> justification, from the templates' metadata."""
    skips = {}
    for path in TEMPLATES.glob("*.yaml"):
        for logical, resource in template(path.name).get("Resources", {}).items():
            for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
                skips[(path.name, logical, skip["id"])] = skip.get("comment", "")
    return skips


@pytest.fixture(scope="module")
def checkov_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    binary = checkov_binary()
    if binary is None:
        pytest.skip(
            "checkov is not installed: `make checkov-venv` creates .venv-checkov "
            "(or set CHECKOV=/path/to/checkov)"
        )
    variant = everything_on_copy(tmp_path_factory.mktemp("checkov") / "everything-on")
    runs = []
    for directory in (TEMPLATES, variant):
        result = subprocess.run(
            [
                str(binary),
                "-d",
                str(directory),
                "--framework",
                "cloudformation",
                "--skip-download",
                "--output",
                "json",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert result.returncode in (0, 1), result.stderr[-3000:]
        report = json.loads(result.stdout)
        runs.append(report[0] if isinstance(report, list) else report)
    return runs


def test_no_failed_check(checkov_results: list[dict[str, Any]]) -> None:
    for report in checkov_results:
        failed = [
            f"{c['file_path']} {c['resource']} {c['check_id']} {c['check_name']}"
            for c in report["results"]["failed_checks"]
        ]
        assert failed == []
        assert report["summary"]["parsing_errors"] == 0


def test_checks_ran_on_the_resources_that_matter(checkov_results: list[dict[str, Any]]) -> None:
    """Guards against a vacuous pass (a template checkov failed to read, a dropped resource)."""
    passed = {
        (c["resource"], c["check_id"]) for c in checkov_results[1]["results"]["passed_checks"]
    }
    for expected in [
        ("AWS::EC2::LaunchTemplate.LaunchTemplate", "CKV_AWS_79"),  # IMDSv2 only
        ("AWS::S3::Bucket.DataBucket", "CKV_AWS_53"),  # public access block
        ("AWS::S3::Bucket.DataBucket", "CKV_AWS_19"),  # encryption
        ("AWS::EFS::FileSystem.FileSystem", "CKV_AWS_42"),  # EFS encrypted
        ("AWS::EC2::SecurityGroup.BatchSecurityGroup", "CKV_AWS_24"),  # no SSH from anywhere
        ("AWS::IAM::Role.JobRole", "CKV_AWS_111"),  # no unconstrained write
        ("AWS::IAM::Policy.JobRoleEfsPolicy", "CKV_AWS_111"),
    ]:
        assert expected in passed, expected


def test_every_skip_is_justified_and_needed(checkov_results: list[dict[str, Any]]) -> None:
    declared = declared_skips()
    for key, comment in declared.items():
        assert len(comment.split()) >= 8, f"skip {key} needs a real justification"
    used = {
        (Path(c["file_path"]).name, c["resource"].split(".", 1)[1], c["check_id"])
        for report in checkov_results
        for c in report["results"]["skipped_checks"]
    }
    assert used == set(declared), "a skip is stale, or a check was skipped outside the metadata"
