"""Job names, retry strategy and the status verdicts."""

import re

from snakemake_executor_plugin_awsbatch import status
from snakemake_executor_plugin_awsbatch.submit import job_name, retry_strategy

VALID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


def test_job_names_are_valid_readable_and_keep_the_unique_part() -> None:
    assert job_name("bwa_mem", "1a2b3c4d-17-a1") == "smk-bwa_mem-1a2b3c4d-17-a1"
    weird = job_name("group...a.b" + "x" * 300, "1a2b3c4d-0123456789ab-a2")
    assert VALID_NAME.match(weird) and len(weird) == 128
    assert weird.endswith("-1a2b3c4d-0123456789ab-a2")


def test_retry_strategy_retries_only_platform_failures() -> None:
    strategy = retry_strategy(2)
    assert strategy["attempts"] == 3
    entries = strategy["evaluateOnExit"]
    assert entries[0] == {"onStatusReason": "Host EC2*", "action": "RETRY"}
    assert entries[-1] == {"onReason": "*", "action": "EXIT"}
    assert all(e["action"] == "RETRY" for e in entries[:-1]) and len(entries) <= 5


def test_verdicts() -> None:
    t = status.Tracking()
    assert status.classify({"status": "RUNNING"}, t, 0, 60) is status.Verdict.ACTIVE
    assert status.classify({"status": "SUCCEEDED"}, t, 0, 60) is status.Verdict.SUCCEEDED
    assert status.classify({"status": "FAILED"}, t, 0, 60) is status.Verdict.FAILED
    reclaimed = {"status": "FAILED", "statusReason": "Host EC2 (instance i-1) terminated."}
    assert status.classify(reclaimed, t, 0, 60) is status.Verdict.SPOT_RECLAIMED


def test_unschedulable_only_after_the_wait_and_reset_when_it_moves() -> None:
    t = status.Tracking()
    stuck = {"status": "RUNNABLE", "statusReason": "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"}
    assert status.classify(stuck, t, 100, 60) is status.Verdict.ACTIVE
    assert status.classify(stuck, t, 159, 60) is status.Verdict.ACTIVE
    assert status.classify({"status": "STARTING"}, t, 170, 60) is status.Verdict.ACTIVE
    assert status.classify(stuck, t, 200, 60) is status.Verdict.ACTIVE  # the clock restarted
    assert status.classify(stuck, t, 260, 60) is status.Verdict.UNSCHEDULABLE
    plain_wait = {"status": "RUNNABLE"}
    assert status.classify(plain_wait, status.Tracking(), 10_000, 0) is status.Verdict.ACTIVE


def test_lost_after_three_missing_rounds_but_not_after_two() -> None:
    t = status.Tracking()
    assert status.classify(None, t, 0, 60) is status.Verdict.ACTIVE
    assert status.classify(None, t, 0, 60) is status.Verdict.ACTIVE
    assert status.classify({"status": "RUNNING"}, t, 0, 60) is status.Verdict.ACTIVE
    assert [status.classify(None, t, 0, 60) for _ in range(3)][-1] is status.Verdict.LOST


def test_failure_summary_reads_container_and_attempts() -> None:
    detail = {
        "statusReason": "Essential container in task exited",
        "attempts": [{"container": {"reason": "OutOfMemoryError: killed", "exitCode": 137}}],
    }
    summary = status.failure_summary(detail)
    assert "OutOfMemoryError" in summary and "exit code: 137" in summary
    assert "exit code: unknown" in status.failure_summary({"statusReason": "x"})
