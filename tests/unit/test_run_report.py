"""The run report's arithmetic on DescribeJobs answers as AWS gives them.

The end-to-end check (a real run with a reclaim and a failure) is
tests/e2e/test_run_report.py; here the cases a sandbox run does not produce: an attempt
under way (AWS lists only finished attempts), several attempts, missing prices.
"""

from __future__ import annotations

from typing import Any

import pytest

from snakemake_executor_plugin_awsbatch import run_report
from snakemake_executor_plugin_awsbatch.config import load_config
from snakemake_executor_plugin_awsbatch.errors import ConfigError
from snakemake_executor_plugin_awsbatch.queues import QueueInspector
from snakemake_executor_plugin_awsbatch.settings import ExecutorSettings

RECLAIMED = "Host EC2 (instance i-0abc) terminated."


def _attempt(start: int, stop: int, reason: str = "Essential container in task exited"):
    return {"startedAt": start, "stoppedAt": stop, "statusReason": reason}


def test_reclaimed_attempts_count_their_time_and_the_attempt_under_way_runs_to_now() -> None:
    detail = {
        "status": "RUNNING",
        "createdAt": 1_000,
        "startedAt": 40_000,  # the third attempt, not in `attempts` while it runs
        "attempts": [_attempt(5_000, 15_000, RECLAIMED), _attempt(20_000, 30_000, RECLAIMED)],
    }
    used = run_report.usage(detail, now_ms=50_000)
    assert (used.attempts, used.reclaims) == (3, 2)
    assert used.queued_seconds == 4.0  # createdAt to the first start
    assert used.running_seconds == 10.0 + 10.0 + 10.0


def test_a_job_that_never_started_was_queued_until_it_ended() -> None:
    detail = {"status": "FAILED", "createdAt": 1_000, "stoppedAt": 9_000, "attempts": []}
    used = run_report.usage(detail, now_ms=50_000)
    assert (used.attempts, used.running_seconds, used.queued_seconds) == (0, 0.0, 8.0)


def test_a_reclaim_recorded_only_on_the_job_counts_once() -> None:
    detail = {
        "status": "FAILED",
        "statusReason": RECLAIMED,
        "createdAt": 0,
        "startedAt": 1_000,
        "stoppedAt": 3_000,
        "attempts": [_attempt(1_000, 3_000, RECLAIMED)],
    }
    assert run_report.usage(detail, now_ms=9_000).reclaims == 1
    detail["attempts"] = []
    assert run_report.usage(detail, now_ms=9_000).reclaims == 1


def test_costs_by_capacity_and_none_where_a_price_is_missing() -> None:
    ledger = run_report.Ledger()
    ledger.add(run_report.Entry("a", "align", "spotq", vcpus=4, memory_mib=8192))
    ledger.add(run_report.Entry("b", "align", "odq", vcpus=4, memory_mib=8192, nodes=2))
    ledger.add(run_report.Entry("c", "call", "odq", vcpus=1, memory_mib=1024))
    hour = 3_600_000
    details = {
        job_id: {"jobId": job_id, "status": "SUCCEEDED", "createdAt": 0, "startedAt": 0,
                 "stoppedAt": hour, "attempts": [_attempt(0, hour)]}
        for job_id in "abc"
    }  # fmt: skip
    capacity = {"spotq": "spot", "odq": "on-demand"}.get
    prices = run_report.parse_prices(["spot-vcpu-hour=0.01", "spot-gib-hour=0.001"])
    report = run_report.build(
        "r1", ledger, lambda ids: {i: details[i] for i in ids}, capacity, prices, {},
        settle_seconds=0,
    )  # fmt: skip
    jobs = {j["job_id"]: j for j in report.jobs}
    assert jobs["a"]["cost"] == pytest.approx(4 * 0.01 + 8 * 0.001)
    assert jobs["b"]["vcpu_hours"] == 8  # 2 nodes
    assert jobs["b"]["cost"] is None  # no on-demand prices
    assert report.rules["align"].cost is None and report.total.cost is None
    assert report.rules["call"].vcpu_hours == 1
    assert "n/a" in report.table().splitlines()[1]


def test_without_prices_there_is_no_cost_column() -> None:
    ledger = run_report.Ledger()
    ledger.add(run_report.Entry("a", "align", "q", vcpus=1, memory_mib=1024, outcome="failed"))
    report = run_report.build("r1", ledger, lambda ids: {}, lambda q: "spot", None, {})
    lines = report.table().splitlines()
    assert "cost" not in lines[0]
    assert lines[-1] == "no cost estimate: give prices with --awsbatch-prices"
    assert report.jobs[0]["status"] == "UNKNOWN" and report.total.failed == 1


def test_jobs_snakemake_saw_end_are_described_again_until_batch_stops_them() -> None:
    ledger = run_report.Ledger()
    ledger.add(run_report.Entry("a", "r", "q", 1, 1024, outcome="succeeded"))
    ledger.add(run_report.Entry("b", "r", "q", 1, 1024, outcome="cancelled"))
    answers: list[list[str]] = []

    def describe(ids: list[str]) -> dict[str, dict[str, Any]]:
        answers.append(ids)
        state = "SUCCEEDED" if len(answers) > 2 else "RUNNING"
        return {i: {"jobId": i, "status": state if i == "a" else "RUNNING"} for i in ids}

    details = run_report.describe_settled(ledger.entries(), describe, sleep=lambda s: None)
    assert answers == [["a", "b"], ["a"], ["a"]]  # never waits for the cancelled one
    assert details["a"]["status"] == "SUCCEEDED"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("spot-vcpu=0.01", "'spot-vcpu=0.01' is not a known price"),
        ("spot-vcpu-hour", "is not a known price"),
        ("spot-vcpu-hour=cheap", "spot-vcpu-hour must be a price of 0 or more, not 'cheap'"),
        ("on-demand-gib-hour=-1", "must be a price of 0 or more, not '-1'"),
        ("spot-gib-hour=nan", "not 'nan'"),
    ],
)
def test_a_bad_price_is_one_line_naming_it(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match="--awsbatch-prices") as error:
        load_config(ExecutorSettings(prices=[value]))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_prices_from_the_environment_variable_are_split_on_spaces() -> None:
    config = load_config(ExecutorSettings(prices=["spot-vcpu-hour=0.01 spot-gib-hour=0.002"]))
    assert config.prices == run_report.Prices(spot_vcpu_hour=0.01, spot_gib_hour=0.002)
    assert load_config(ExecutorSettings()).prices is None


def test_a_queue_is_priced_by_its_first_compute_environment(account: Any) -> None:
    """The priority queue tries on-demand first, whatever order Batch describes them in."""
    account.standard_queues()  # priority: [ondemand, spot], the spot one created first
    queues = QueueInspector(account.batch, account.ec2)
    assert [e.kind for e in queues.get("priority").environments] == ["EC2", "SPOT"]
    assert run_report.capacity_of(queues.get("priority").environments[0].kind) == "on-demand"
    assert run_report.capacity_of(queues.get("default").environments[0].kind) == "spot"
