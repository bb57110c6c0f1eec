"""The submitting user's policy in docs/iam/ allows what the code calls, and nothing more.

What the code calls is read from the submitting side's source (the job side runs under
the job role): every method named like a Batch, S3, CloudWatch Logs, EC2 or
CloudFormation operation, and every paginator. A new call without its action in the
policy fails here, and so does an action in the policy that no code needs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import botocore.session
from botocore import xform_name

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "snakemake_executor_plugin_awsbatch"
POLICY = ROOT / "docs" / "iam" / "submitting-user-policy.json"
JOB_SIDE = {"jobside", "sandbox", "runtime"}  # run in jobs or on the sandbox, not as you
SERVICES = ("batch", "s3", "logs", "ec2", "cloudformation")  # IAM prefix = service name
# S3's IAM actions are not its operations' names.
S3_ACTIONS = {
    "HeadObject": "s3:GetObject",
    "ListObjectsV2": "s3:ListBucket",
    "DeleteObjects": "s3:DeleteObject",
}
# Actions no method name shows: why each is needed, and the code that needs it.
IMPLIED = {
    "iam:PassRole": ("jobdef.py", "jobRoleArn"),  # definitions name the job role
    "batch:TagResource": ("jobdef.py", "tags=self._tags"),  # tagged on creation
    "s3:AbortMultipartUpload": ("transfer/upload.py", "self.manager.upload("),  # s3transfer
}


def _operations() -> dict[str, str]:
    """python method name -> IAM action, for the services the plugin uses."""
    session = botocore.session.get_session()
    actions: dict[str, str] = {}
    for service in SERVICES:
        for operation in session.get_service_model(service).operation_names:
            action = S3_ACTIONS.get(operation, f"{service}:{operation}")
            actions[xform_name(operation)] = action
    return actions


def _called() -> set[str]:
    operations = _operations()
    sources = [p for p in PACKAGE.rglob("*.py") if not JOB_SIDE & set(p.parts)]
    names = set()
    for path in sources:
        text = path.read_text()
        names |= set(re.findall(r"\.([a-z][a-z0-9_]+)\(", text))
        names |= set(re.findall(r"get_paginator\(\s*\"([a-z0-9_]+)\"", text))
    return {operations[name] for name in names if name in operations}


def _allowed() -> set[str]:
    statements = json.loads(POLICY.read_text())["Statement"]
    actions: set[str] = set()
    for statement in statements:
        assert statement["Effect"] == "Allow"
        listed = statement["Action"]
        actions |= {listed} if isinstance(listed, str) else set(listed)
    return actions


def test_the_policy_allows_exactly_what_the_submitting_side_calls() -> None:
    needed = _called() | set(IMPLIED)
    allowed = _allowed()
    assert needed - allowed == set(), "calls the policy does not allow"
    assert allowed - needed == set(), "actions the policy allows that no code needs"


def test_each_implied_action_still_has_its_reason_in_the_code() -> None:
    for action, (module, evidence) in IMPLIED.items():
        assert evidence in (PACKAGE / module).read_text(), f"{action}: {module} changed"


def test_the_scan_sees_the_calls_it_must() -> None:
    """The scan itself: a few calls every run makes, each in its own module."""
    called = _called()
    for action in ("batch:SubmitJob", "batch:DescribeJobs", "s3:PutObject", "s3:ListBucket"):
        assert action in called
