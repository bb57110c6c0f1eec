"""The sandbox's moto behaves like AWS Batch where the plugin depends on it (moto_patches.py).

Array jobs, retry strategies and containers that cannot start, each with real containers.
Every test here fails on an unpatched moto.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from snakemake_executor_plugin_awsbatch.sandbox.processes import wait_until
from snakemake_executor_plugin_awsbatch.submit import retry_strategy

pytestmark = pytest.mark.e2e

# What the plugin submits with two spot retries: RETRY start failures, EXIT on anything else.
PLUGIN_STRATEGY = retry_strategy(spot_retries=2)
# Traps SIGTERM (bash as PID 1 ignores it otherwise), says it runs, then waits to be stopped.
WAIT_FOR_STOP = (
    "trap 'exit 143' TERM; touch /scratch/{ready}-${{AWS_BATCH_JOB_ARRAY_INDEX:-0}}; "
    "while true; do sleep 0.1; done"
)


def _name(prefix: str) -> str:
    """A job name of its own, so that containers left behind are this test's."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _submit(jobs, name: str, definition: str, **request: Any) -> str:
    return jobs.batch.submit_job(
        jobName=name,
        jobQueue=jobs.sandbox.env["SNAKEMAKE_AWSBATCH_DEFAULT_QUEUE"],
        jobDefinition=definition,
        **request,
    )["jobId"]


def _children(jobs, parent: str, status: str | None = None) -> list[dict[str, Any]]:
    extra = {"jobStatus": status} if status else {}
    summaries = jobs.batch.list_jobs(arrayJobId=parent, **extra)["jobSummaryList"]
    ids = [summary["jobId"] for summary in summaries]
    return jobs.batch.describe_jobs(jobs=ids)["jobs"] if ids else []


def _queue_listing(jobs, status: str) -> set[str]:
    queue = jobs.sandbox.env["SNAKEMAKE_AWSBATCH_DEFAULT_QUEUE"]
    summaries = jobs.batch.list_jobs(jobQueue=queue, jobStatus=status)["jobSummaryList"]
    return {summary["jobId"] for summary in summaries}


def _no_containers_left(sandbox, name: str) -> bool:
    return wait_until(lambda: not [c for c in sandbox.job_containers() if name in c], 30)


def test_array_children_run_apart_listed_and_tagged_like_aws(jobs):
    name = _name("array")
    script = 'echo "$AWS_BATCH_JOB_ARRAY_INDEX $AWS_BATCH_JOB_ID $GREETING"'
    parent = _submit(
        jobs,
        name,
        jobs.define(name, script),
        arrayProperties={"size": 3},
        tags={"snakemake-run": name},
        containerOverrides={"environment": [{"name": "GREETING", "value": "hi"}]},
    )
    described = jobs.wait(parent, timeout=60)

    assert described["status"] == "SUCCEEDED"
    assert described["arrayProperties"]["size"] == 3
    assert described["arrayProperties"]["statusSummary"]["SUCCEEDED"] == 3
    children = sorted(_children(jobs, parent, "SUCCEEDED"), key=lambda c: c["jobId"])
    assert [c["jobId"] for c in children] == [f"{parent}:{i}" for i in range(3)]
    for index, child in enumerate(children):
        assert child["arrayProperties"] == {"index": index}
        assert child["tags"] == {"snakemake-run": name}
        assert jobs.log_lines(child) == [f"{index} {parent}:{index} hi"]
        names = [e["name"] for e in child["container"]["environment"]]
        assert names.count("AWS_BATCH_JOB_ID") == 1  # moto appended one per describe
    assert len({c["container"]["logStreamName"] for c in children}) == 3
    listed = _queue_listing(jobs, "SUCCEEDED")
    assert parent in listed
    assert not {c["jobId"] for c in children} & listed


def test_array_with_a_failed_child_fails_when_all_are_done(jobs):
    name = _name("array-fail")
    script = '[ "$AWS_BATCH_JOB_ARRAY_INDEX" != 1 ] || exit 3'
    parent = _submit(jobs, name, jobs.define(name, script), arrayProperties={"size": 3})
    described = jobs.wait(parent, timeout=60)

    assert described["status"] == "FAILED"
    summary = described["arrayProperties"]["statusSummary"]
    assert (summary["SUCCEEDED"], summary["FAILED"]) == (2, 1)
    [failed] = _children(jobs, parent, "FAILED")
    assert failed["jobId"] == f"{parent}:1"
    assert failed["container"]["exitCode"] == 3
    assert failed["statusReason"] == "Essential container in task exited"
    assert len(_children(jobs, parent, "SUCCEEDED")) == 2
    assert parent in _queue_listing(jobs, "FAILED")


def test_terminating_the_parent_stops_every_child(jobs, sandbox):
    name = _name("array-stop")
    ready = uuid.uuid4().hex
    definition = jobs.define(name, WAIT_FOR_STOP.format(ready=ready), scratch=True)
    parent = _submit(jobs, name, definition, arrayProperties={"size": 3})
    started = [sandbox.scratch_dir / f"{ready}-{i}" for i in range(3)]
    assert wait_until(lambda: all(p.exists() for p in started), 60), "children never ran"
    assert jobs.describe(parent)["status"] == "PENDING"

    jobs.batch.terminate_job(jobId=parent, reason="stopped by the test")
    described = jobs.wait(parent, timeout=60)

    assert described["status"] == "FAILED"
    children = _children(jobs, parent, "FAILED")
    assert len(children) == 3
    assert {c["statusReason"] for c in children} == {"stopped by the test"}
    assert {c["container"]["exitCode"] for c in children} == {143}
    assert _no_containers_left(sandbox, name)


def test_missing_image_fails_to_start_and_is_retried(jobs, sandbox):
    name = _name("no-image")
    image = f"localhost/no-such-image:{uuid.uuid4().hex[:8]}"
    definition = jobs.define(name, "true", image=image)
    began = time.monotonic()
    job = jobs.wait(_submit(jobs, name, definition, retryStrategy=PLUGIN_STRATEGY), timeout=60)

    assert time.monotonic() - began < 60
    assert job["status"] == "FAILED"
    assert job["statusReason"] == "Task failed to start"
    assert len(job["attempts"]) == 3
    for attempt in job["attempts"]:
        assert attempt["statusReason"] == "Task failed to start"
        assert attempt["container"]["reason"].startswith("CannotPullContainerError")
        assert image in attempt["container"]["reason"]
        assert "exitCode" not in attempt["container"]
        assert "logStreamName" not in attempt["container"]
    assert job["container"]["reason"] == job["attempts"][-1]["container"]["reason"]
    assert _no_containers_left(sandbox, name)


def test_container_that_cannot_start_is_retried(jobs, sandbox, tmp_path):
    # A file bind-mounted over the image's /etc directory: created, but runc cannot start it.
    name = _name("no-start")
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    definition = jobs.define(name, "true", mounts={str(not_a_directory): "/etc"})
    strategy = retry_strategy(spot_retries=1)
    job = jobs.wait(_submit(jobs, name, definition, retryStrategy=strategy), timeout=60)

    assert job["status"] == "FAILED"
    assert job["statusReason"] == "Task failed to start"
    reasons = [attempt["container"]["reason"] for attempt in job["attempts"]]
    assert len(reasons) == 2
    assert all(reason.startswith("CannotStartContainerError: ") for reason in reasons)
    assert _no_containers_left(sandbox, name)


def test_plain_non_zero_exit_is_not_retried_by_the_plugins_strategy(jobs):
    name = _name("exit-1")
    definition = jobs.define(name, "exit 1")
    job = jobs.wait(_submit(jobs, name, definition, retryStrategy=PLUGIN_STRATEGY))

    assert job["status"] == "FAILED"
    assert len(job["attempts"]) == 1
    assert job["attempts"][0]["container"]["exitCode"] == 1
    assert job["attempts"][0]["statusReason"] == "Essential container in task exited"


def test_failed_attempt_is_retried_in_a_fresh_container(jobs):
    name = _name("second-try")
    script = 'echo "attempt $AWS_BATCH_JOB_ATTEMPT"; [ "$AWS_BATCH_JOB_ATTEMPT" = 2 ]'
    job = jobs.wait(_submit(jobs, name, jobs.define(name, script), retryStrategy={"attempts": 2}))

    assert job["status"] == "SUCCEEDED"
    first, second = job["attempts"]
    assert first["container"]["exitCode"] == 1
    assert first["statusReason"] == "Essential container in task exited"
    assert second["container"]["exitCode"] == 0
    assert first["stoppedAt"] <= second["startedAt"]
    assert job["container"]["exitCode"] == 0
    streams = [attempt["container"]["logStreamName"] for attempt in (first, second)]
    assert job["container"]["logStreamName"] == streams[1] != streams[0]
    logs = [jobs.log_lines({"container": {"logStreamName": s}}) for s in streams]
    assert logs == [["attempt 1"], ["attempt 2"]]


def test_retry_strategy_of_the_job_definition_applies(jobs):
    name = _name("jobdef-retry")
    properties = {
        "image": jobs.sandbox.image,
        "command": ["bash", "-c", '[ "$AWS_BATCH_JOB_ATTEMPT" = 3 ]'],
        "resourceRequirements": [
            {"type": "VCPU", "value": "1"},
            {"type": "MEMORY", "value": "256"},
        ],
    }
    definition = jobs.batch.register_job_definition(
        jobDefinitionName=name,
        type="container",
        containerProperties=properties,
        retryStrategy={"attempts": 3, "evaluateOnExit": [{"onExitCode": "1", "action": "retry"}]},
    )["jobDefinitionArn"]
    job = jobs.wait(_submit(jobs, name, definition))

    assert job["status"] == "SUCCEEDED"
    assert [a["container"]["exitCode"] for a in job["attempts"]] == [1, 1, 0]


def test_terminated_job_is_not_retried(jobs, sandbox):
    name = _name("terminated")
    ready = uuid.uuid4().hex
    definition = jobs.define(name, WAIT_FOR_STOP.format(ready=ready), scratch=True)
    job_id = _submit(jobs, name, definition, retryStrategy={"attempts": 3})
    assert wait_until((sandbox.scratch_dir / f"{ready}-0").exists, 60), "the job never ran"

    jobs.batch.terminate_job(jobId=job_id, reason="stopped by the test")
    job = jobs.wait(job_id)

    assert job["status"] == "FAILED"
    assert job["statusReason"] == "stopped by the test"
    assert len(job["attempts"]) == 1
    assert job["attempts"][0]["statusReason"] == "stopped by the test"
    assert _no_containers_left(sandbox, name)
