"""The manifest round-trips through JSON and rejects what the runner cannot safely do."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from snakemake_executor_plugin_awsbatch.jobside.manifest import (
    InputEntry,
    Manifest,
    ManifestError,
    OutputEntry,
)

SHA = "a" * 64


def manifest() -> Manifest:
    return Manifest(
        run_id="r",
        jobname="j",
        command="x" * 100_000,  # long commands are the reason the manifest exists
        report_uri="s3://b/runs/r/j/report.json",
        inputs=[InputEntry("data/in put.txt", "s3://b/files/data/in put.txt", SHA, 3)],
        outputs=[
            OutputEntry("out", "s3://b/files/out", True, "output"),
            OutputEntry("l", "s3://b/l", kind="log"),
        ],
        env={"A": "1"},
    )


def test_round_trip() -> None:
    m = manifest()
    assert Manifest.from_json(m.to_json()) == m


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(version=2), "version 2 is not supported"),
        (lambda d: d["inputs"][0].update(path="../escape"), "not a relative path"),
        (lambda d: d["inputs"][0].update(path="/abs"), "not a relative path"),
        (lambda d: d["inputs"][0].update(sha256="xyz"), "sha256"),
        (lambda d: d["inputs"][0].update(size=True), "size must be int"),
        (lambda d: d["inputs"][0].update(uri="http://x/y"), "not an s3:// URI"),
        (lambda d: d["outputs"][0].update(kind="other"), "kind 'other'"),
        (lambda d: d["outputs"][0].update(path="data/in put.txt"), "more than once"),
        (lambda d: d.pop("command"), "command"),
        (lambda d: d.update(env={"A": 1}), "env"),
    ],
)
def test_rejects_bad_manifests(change: Callable[[dict[str, Any]], Any], message: str) -> None:
    data = json.loads(manifest().to_json())
    change(data)
    with pytest.raises(ManifestError, match=message):
        Manifest.from_json(json.dumps(data))
