"""The plan check's comparison: what differs between the planned and the job's own files."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from snakemake_executor_plugin_awsbatch.jobside import planned


@dataclass
class _File:
    path: str
    query: str = ""  # in storage: its s3:// query

    @property
    def is_storage(self) -> bool:
        return bool(self.query)

    @property
    def storage_object(self) -> SimpleNamespace:
        return SimpleNamespace(query=self.query)

    def __str__(self) -> str:
        return self.path


@dataclass
class _Job:
    rule_name: str
    input: list[_File] = field(default_factory=list)
    output: list[_File] = field(default_factory=list)
    log: list[_File] = field(default_factory=list)
    benchmark: _File | None = None

    @property
    def rule(self) -> SimpleNamespace:
        return SimpleNamespace(name=self.rule_name)

    def is_group(self) -> bool:
        return False


def _aggregate(*shards: str) -> _Job:
    return _Job("aggregate", [_File(f"post/{s}.txt") for s in shards], [_File("agg.txt")])


def test_the_same_files_in_another_order_are_the_plan():
    plan = planned.planned_jobs(_aggregate("1", "2", "3"))
    assert planned.difference(plan, _aggregate("3", "1", "2")) is None


def test_missing_inputs_are_named():
    plan = planned.planned_jobs(_aggregate("1", "2", "3"))
    assert planned.difference(plan, _aggregate()) == (
        "rule aggregate: input planned but not here: post/1.txt, post/2.txt, post/3.txt"
    )


def test_storage_files_compare_by_their_query_not_their_local_copy():
    submitting = _Job("r", [_File(".snakemake/storage/s3/b/k", "s3://b/k")])
    in_job = _Job("r", [_File("/scratch/j/.snakemake/storage/s3/b/k", "s3://b/k")])
    assert planned.difference(planned.planned_jobs(submitting), in_job) is None
    other = _Job("r", [_File(".snakemake/storage/s3/b/k2", "s3://b/k2")])
    assert "input here but not planned: s3://b/k2" in planned.difference(
        planned.planned_jobs(submitting), other
    )


def test_another_rule_and_other_outputs_and_logs_are_named():
    plan = planned.planned_jobs(_Job("a", log=[_File("a.log")], benchmark=_File("a.tsv")))
    assert planned.difference(plan, _Job("b")) == (
        "it would run rule b, the submitting side planned a"
    )
    message = planned.difference(plan, _Job("a", log=[_File("x.log")]))
    assert message == (
        "rule a: log planned but not here: a.log; log here but not planned: x.log; "
        "benchmark planned but not here: a.tsv"
    )


def test_a_long_list_is_shortened():
    plan = planned.planned_jobs(_aggregate(*map(str, range(12))))
    assert planned.difference(plan, _aggregate()).endswith("and 7 more")


def test_the_plan_file_names_a_difference_where_the_runner_reads_it(tmp_path, monkeypatch):
    path, mismatch = tmp_path / "plan.json", tmp_path / "mismatch.txt"
    planned.Plan.write(path, tmp_path, planned.planned_jobs(_aggregate("1")), mismatch)
    monkeypatch.chdir(tmp_path)
    plan = planned.Plan(path)
    assert plan.mismatch([_aggregate("1")]) is None and not mismatch.exists()
    line = plan.mismatch([_aggregate()])
    assert line == mismatch.read_text().strip()
    assert line.startswith("the job's Snakemake planned otherwise than the submitting side: rule")


def test_another_working_directory_is_a_difference(tmp_path, monkeypatch):
    path, mismatch = tmp_path / "plan.json", tmp_path / "mismatch.txt"
    planned.Plan.write(path, tmp_path / "work", planned.planned_jobs(_aggregate("1")), mismatch)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    line = planned.Plan(path).mismatch([_aggregate("1")])
    assert f"runs in {elsewhere}, not in the job's directory {tmp_path / 'work'}" in line


@pytest.mark.parametrize("env", [{}, {planned.PLAN_ENV: ""}])
def test_the_scheduler_outside_a_job_is_one_clear_error(monkeypatch, env):
    from snakemake_interface_common.exceptions import WorkflowError

    from snakemake_executor_plugin_awsbatch.jobside.plan_check import Scheduler

    monkeypatch.delenv(planned.PLAN_ENV, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(WorkflowError, match="inside AWS Batch jobs of the awsbatch executor only"):
        Scheduler(SimpleNamespace(), None, SimpleNamespace())
