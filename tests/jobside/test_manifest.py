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
    pack,
    record_range,
    unpack,
)
from snakemake_executor_plugin_awsbatch.jobside.stage import input_items

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
        plan=[
            {
                "rule": "r",
                "input": ["data/in put.txt"],
                "output": ["out"],
                "log": ["l"],
                "benchmark": [],
            }
        ],
    )


def test_round_trip() -> None:
    m = manifest()
    assert Manifest.from_json(m.to_json()) == m


def test_each_record_of_a_pack_is_one_child_manifest_at_its_index_range() -> None:
    # Of different lengths, with a newline and non-ASCII text inside a string.
    children = [manifest() for _ in range(3)]
    for n, m in enumerate(children):
        m.jobname = f"array/{n}"
        m.command = "echo ü\n" + "x" * (n * 50)
    body, width = pack(children)
    assert len(body) == 3 * width and body.count(b"\n") == 3
    for n, m in enumerate(children):
        span = record_range(width, {"AWS_BATCH_JOB_ARRAY_INDEX": str(n)})
        start, end = (int(x) for x in span.removeprefix("bytes=").split("-"))
        assert Manifest.from_json(body[start : end + 1]) == m
    assert unpack(body) == children


def test_a_pack_without_an_array_index_is_one_clear_error() -> None:
    with pytest.raises(ManifestError, match="AWS_BATCH_JOB_ARRAY_INDEX is not set"):
        record_range(100, {})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(version=3), "version 3 is not supported"),
        (lambda d: d["plan"][0].update(input="a.txt"), "plan.input must be list"),
        (lambda d: d["plan"][0].pop("log"), "log"),
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


def test_a_version_1_manifest_of_an_older_run_is_read_without_a_plan() -> None:
    data = json.loads(manifest().to_json())
    del data["plan"]
    data["version"] = 1
    parsed = Manifest.from_json(json.dumps(data))
    assert parsed.version == 1 and parsed.plan == []
    assert parsed.record == manifest().record


def test_an_input_listed_in_s3_without_a_digest_is_checked_by_size_and_its_own_digest(
    tmp_path: Any,
) -> None:
    m = manifest()
    m.inputs.append(
        InputEntry(".snakemake/storage/s3/b/ref/g.fa.fai", "s3://b/ref/g.fa.fai", "", 9)
    )
    parsed = Manifest.from_json(m.to_json())
    assert parsed == m
    item = input_items(parsed, tmp_path)[-1]
    assert item.sha256 is None and item.size == 9
