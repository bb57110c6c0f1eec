"""Grouping into array jobs, child ids, what Ctrl-C terminates; adoption's identities."""

from __future__ import annotations

from types import SimpleNamespace

from snakemake_executor_plugin_awsbatch import arrays
from snakemake_executor_plugin_awsbatch.adoption import Orphan, Orphans, fingerprint, identity
from snakemake_executor_plugin_awsbatch.jobside.manifest import InputEntry

SHA = "0" * 64


def test_alike_items_share_a_group_in_order_and_groups_are_capped() -> None:
    items = ["a1", "b1", "a2", "a3", "b2", "a4", "a5"]
    assert arrays.group(items, key=lambda s: s[0], max_size=3) == [
        ["a1", "a2", "a3"],
        ["a4", "a5"],
        ["b1", "b2"],
    ]
    assert arrays.group(items, key=lambda s: s[0], max_size=1) == [
        [i] for i in ["a1", "a2", "a3", "a4", "a5", "b1", "b2"]
    ]


def test_whole_arrays_are_terminated_in_one_call_partial_ones_per_child() -> None:
    whole = [arrays.child_id("A", i) for i in range(3)]
    partial = [arrays.child_id("B", 0), arrays.child_id("B", 2)]
    targets = arrays.terminations([*whole, *partial, "single"], {"A": 3, "B": 4})
    assert targets == ["A", "B:0", "B:2", "single"]
    assert arrays.parent_of("A:12") == "A" and arrays.parent_of("plain-id") is None


def test_a_pack_goes_with_its_last_child_and_an_adopted_one_only_at_the_end() -> None:
    pack = arrays.Pack("s3://b/p", pending=2)
    assert [pack.release(), pack.release()] == [False, True]
    adopted = arrays.Pack("s3://b/q", pending=None)
    assert not any(adopted.release() for _ in range(3))


def _job(outputs: list[str]) -> SimpleNamespace:
    return SimpleNamespace(rules=["align"], output=outputs)


def test_fingerprint_is_stable_across_runs_and_sees_what_the_job_computes() -> None:
    job = identity(_job(["a.bam"]))
    inputs = [InputEntry("a.fq", "s3://b/a.fq", SHA, 3)]
    first = "python -m snakemake --attempt 1 --rerun-triggers code mtime --target-jobs 'align:s=a'"
    # A restart: attempts counted afresh, set-valued options in another order.
    again = "python -m snakemake --attempt 2 --rerun-triggers mtime code --target-jobs 'align:s=a'"
    assert fingerprint(job, first, inputs) == fingerprint(job, again, inputs)
    changed = [InputEntry("a.fq", "s3://b/a.fq", "1" * 64, 3)]
    assert fingerprint(job, first, changed) != fingerprint(job, first, inputs)
    assert fingerprint(job, first.replace("s=a", "s=b"), inputs) != fingerprint(job, first, inputs)
    assert identity(_job(["a.bam"])) != identity(_job(["b.bam"]))
    # In S3 storage the inputs are only named: another set of them is another job.
    planned = [
        {"rule": "align", "input": ["s3://b/a.fq"], "output": [], "log": [], "benchmark": []}
    ]
    other = [{**planned[0], "input": ["s3://b/b.fq"]}]
    assert fingerprint(job, first, [], planned) != fingerprint(job, first, [], other)


def _orphan(ident: str, fp: str, status: str = "RUNNING") -> Orphan:
    return Orphan("dead", "k", "s3://b/r", "s3://b/m", ident, fp, "default", "J:0", status)


def test_orphans_are_adopted_once_replaced_when_stale_and_ended_when_unneeded() -> None:
    orphans = Orphans(
        [_orphan("same", "fp"), _orphan("edited", "old"), _orphan("unneeded", "x")], ["dead"]
    )
    gone = orphans.unneeded({"same", "edited"})
    assert [o.identity for o in gone] == ["unneeded"]
    adopted, stale = orphans.claim("same", "fp")
    assert adopted is not None and not stale
    assert orphans.claim("same", "fp") == (None, False)  # never twice
    replaced, stale = orphans.claim("edited", "new")
    assert replaced is not None and stale  # to be terminated, and the job submitted anew
    assert orphans.leftovers() == []
