"""The executor against moto's in-process Batch API (no containers run)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from snakemake_executor_plugin_awsbatch.errors import ConfigError
from snakemake_executor_plugin_awsbatch.jobside.report import Report
from snakemake_executor_plugin_awsbatch.settings import ExecutorSettings
from tests.unit.conftest import (
    IMAGE,
    PREFIX,
    ApiCalls,
    BatchAccount,
    FakeJob,
    collect,
    make_executor,
)


def wait_for_status(account: BatchAccount, job_id: str, wanted: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if account.batch.describe_jobs(jobs=[job_id])["jobs"][0]["status"] == wanted:
            return
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {wanted}")


def test_fifty_jobs_of_one_shape_share_one_job_definition(account: BatchAccount) -> None:
    account.standard_queues()
    jobs = [FakeJob(rule_name=f"r{i % 5}", threads=1 + i % 3) for i in range(50)]
    executor, _ = make_executor(jobs)
    calls = ApiCalls(executor.aws.batch, executor.aws.submit)
    for job in jobs:
        executor.run_job(job)

    submits = calls.named("SubmitJob")
    assert len(submits) == 50
    assert len({s["jobDefinition"] for s in submits}) == 1
    assert calls.named("RegisterJobDefinition") == []  # registered once, during planning
    definitions = account.batch.describe_job_definitions(status="ACTIVE")["jobDefinitions"]
    assert len(definitions) == 1
    assert definitions[0]["containerProperties"].get("privileged", False) is False

    # A second run finds the definition instead of registering another.
    make_executor(jobs[:1])
    assert len(account.batch.describe_job_definitions(status="ACTIVE")["jobDefinitions"]) == 1


def test_per_job_values_travel_in_overrides(account: BatchAccount) -> None:
    account.standard_queues()
    job = FakeJob(
        rule_name="call", threads=4, resources={"mem_mib": 3000, "runtime": 90, "_cores": 4}
    )
    executor, recorder = make_executor([job], envvars={"MY_SETTING": "x"})
    calls = ApiCalls(executor.aws.batch, executor.aws.submit)
    executor.run_job(job)

    (request,) = calls.named("SubmitJob")
    overrides = request["containerOverrides"]
    runner, manifest_uri = overrides["command"][:3], overrides["command"][3]
    assert runner == ["python", "-m", "snakemake_executor_plugin_awsbatch.jobside"]
    assert overrides["command"][4:] == ["--scratch-root", "/scratch", "--image", IMAGE]
    # The Snakemake command travels in the manifest, not in the request.
    bucket, key = manifest_uri.removeprefix("s3://").split("/", 1)
    manifest = json.loads(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    assert manifest["command"] == "python -m snakemake --target-jobs 'call:'"
    assert manifest["input_cache"] == "25%"  # --awsbatch-input-cache's default
    assert manifest_uri.startswith(f"{PREFIX}/_awsbatch/runs/{executor.run_id}/")
    assert {"name": "MY_SETTING", "value": "x"} in overrides["environment"]
    assert {r["type"]: r["value"] for r in overrides["resourceRequirements"]} == {
        "VCPU": "4",
        "MEMORY": "3000",
    }
    assert request["timeout"] == {"attemptDurationSeconds": 5400}
    assert request["jobQueue"] == "default"
    assert request["tags"]["snakemake-rule"] == "call"
    assert request["tags"]["snakemake-run"] == executor.run_id
    assert request["propagateTags"] is True
    assert len(request["jobName"]) <= 128 and request["jobName"].startswith("smk-call-")
    (info,) = recorder.submitted
    assert info.external_jobid
    assert any(
        info.external_jobid in line and "console.aws.amazon.com" in line for line in recorder.infos
    )


def test_every_job_carries_the_spot_retry_strategy(account: BatchAccount) -> None:
    account.standard_queues()
    jobs = [
        FakeJob(rule_name="a"),
        FakeJob(rule_name="b", resources={"awsbatch_queue": "priority"}),
    ]
    executor, _ = make_executor(
        jobs, ExecutorSettings(image=IMAGE, s3_prefix=PREFIX, spot_retries=3)
    )
    calls = ApiCalls(executor.aws.batch, executor.aws.submit)
    for job in jobs:
        executor.run_job(job)
    for request in calls.named("SubmitJob"):
        strategy = request["retryStrategy"]
        assert strategy["attempts"] == 4
        rules = strategy["evaluateOnExit"]
        assert {"onStatusReason": "Host EC2*", "action": "RETRY"} in rules
        assert rules[-1] == {"onReason": "*", "action": "EXIT"}
        assert len(rules) <= 5
    assert [r["jobQueue"] for r in calls.named("SubmitJob")] == ["default", "priority"]


def test_priority_rules_and_queue_resource_route_jobs(account: BatchAccount) -> None:
    account.standard_queues()
    spot = account.batch.describe_compute_environments(computeEnvironments=["spot"])
    account.queue("bigmem", spot["computeEnvironments"][0]["computeEnvironmentArn"])
    jobs = [
        FakeJob(rule_name="index"),
        FakeJob(rule_name="report"),
        FakeJob(rule_name="sort", resources={"awsbatch_queue": "bigmem"}),
    ]
    settings = ExecutorSettings(image=IMAGE, s3_prefix=PREFIX, priority_rules=["report"])
    executor, _ = make_executor(jobs, settings)
    calls = ApiCalls(executor.aws.batch, executor.aws.submit)
    for job in jobs:
        executor.run_job(job)
    assert [r["jobQueue"] for r in calls.named("SubmitJob")] == ["default", "priority", "bigmem"]


def test_status_round_uses_one_describe_per_hundred_jobs(account: BatchAccount) -> None:
    account.standard_queues()
    jobs = [FakeJob(rule_name="scatter") for _ in range(250)]
    executor, recorder = make_executor(jobs)
    for job in jobs:
        executor.run_job(job)
    calls = ApiCalls(executor.aws.batch, executor.aws.submit)

    asyncio.run(collect(executor, recorder.submitted))

    describes = calls.named("DescribeJobs")
    assert [len(d["jobs"]) for d in describes] == [100, 100, 50]


def _write_report(executor: Any, info: Any, status: str, error: str | None = None) -> None:
    """What the job-side runner leaves next to the manifest when it ends."""
    report = Report(executor.run_id, info.aux["state"].name, status=status, error=error)
    uri = info.aux["state"].report_uri
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=report.to_json())


def test_finished_jobs_are_reported(account: BatchAccount) -> None:
    account.standard_queues()
    jobs = [FakeJob(rule_name="ok"), FakeJob(rule_name="partial")]
    executor, recorder = make_executor(jobs)
    for job in jobs:
        executor.run_job(job)
    ok, partial = recorder.submitted
    _write_report(executor, ok, "succeeded")
    # Batch says SUCCEEDED, but the runner found an output missing: that is a failure.
    _write_report(executor, partial, "failed", error="missing output: results/x.txt")
    for info in (ok, partial):
        wait_for_status(account, info.external_jobid, "SUCCEEDED")

    still_active = asyncio.run(collect(executor, [ok, partial]))

    assert still_active == []
    assert recorder.succeeded == [ok]
    ((failed, message, _),) = recorder.errors
    assert failed is partial and "missing output: results/x.txt" in message


def _reclaimed(job_id: str) -> dict[str, Any]:
    reason = "Host EC2 (instance i-0abc) terminated."
    return {
        "jobId": job_id,
        "jobName": "x",
        "jobQueue": "q",
        "jobDefinition": "d",
        "status": "FAILED",
        "startedAt": 1,
        "statusReason": reason,
        "attempts": [{"statusReason": reason, "container": {}}] * 3,
    }


def test_spot_reclaimed_job_moves_to_priority_queue_once(account: BatchAccount) -> None:
    account.standard_queues()
    job = FakeJob(rule_name="align")
    executor, recorder = make_executor([job])
    executor.run_job(job)
    (info,) = recorder.submitted
    calls = ApiCalls(executor.aws.batch, executor.aws.submit)

    with Stubber(executor.aws.batch) as stub, Stubber(executor.aws.submit) as submits:
        # Batch spent every spot attempt; the job is FAILED with the reclaim reason.
        stub.add_response("describe_jobs", {"jobs": [_reclaimed(info.external_jobid)]})
        submits.add_response("submit_job", {"jobId": "moved-1", "jobName": "n", "jobArn": "a"})
        (moved,) = asyncio.run(collect(executor, [info]))

        assert recorder.errors == []  # no Snakemake retry used up
        (resubmit,) = calls.named("SubmitJob")
        assert resubmit["jobQueue"] == "priority"
        assert resubmit["jobName"].endswith("-p")
        assert moved.external_jobid == "moved-1" and moved.aux["state"].moved_to_priority

        # Reclaimed again on the priority queue: a failure now, not another move.
        stub.add_response("describe_jobs", {"jobs": [_reclaimed("moved-1")]})
        assert asyncio.run(collect(executor, [moved])) == []
    assert len(calls.named("SubmitJob")) == 1
    ((failed, message, _),) = recorder.errors
    assert failed is moved and "spot instance was reclaimed" in message


def test_cancel_terminates_every_active_job_naming_the_run(account: BatchAccount) -> None:
    account.standard_queues()
    jobs = [FakeJob(rule_name="long") for _ in range(3)]
    executor, recorder = make_executor(jobs)
    for job in jobs:
        executor.run_job(job)
    calls = ApiCalls(executor.aws.batch, executor.aws.submit)

    executor.cancel_jobs(recorder.submitted)

    terminated = calls.named("TerminateJob")
    assert sorted(t["jobId"] for t in terminated) == sorted(
        i.external_jobid for i in recorder.submitted
    )
    assert all(executor.run_id in t["reason"] for t in terminated)


def test_failure_message_contains_the_log_tail(
    account: BatchAccount, tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    account.standard_queues()
    job = FakeJob(rule_name="broken")
    executor, recorder = make_executor(
        [job], ExecutorSettings(image=IMAGE, s3_prefix=PREFIX, log_tail_lines=3)
    )
    executor.run_job(job)
    (info,) = recorder.submitted
    stream = "snakemake-awsbatch-x/default/abc"
    now_ms = int(time.time() * 1000)
    account.logs.create_log_group(logGroupName="/aws/batch/job")
    account.logs.create_log_stream(logGroupName="/aws/batch/job", logStreamName=stream)
    account.logs.put_log_events(
        logGroupName="/aws/batch/job",
        logStreamName=stream,
        logEvents=[{"timestamp": now_ms + i, "message": f"line {i}"} for i in range(10)],
    )
    failed = {
        "jobId": info.external_jobid,
        "jobName": "x",
        "jobQueue": "default",
        "jobDefinition": "d",
        "status": "FAILED",
        "startedAt": 1,
        "statusReason": "Essential container in task exited",
        "container": {"exitCode": 1, "logStreamName": stream},
    }
    with Stubber(executor.aws.batch) as stub:
        stub.add_response("describe_jobs", {"jobs": [failed]})
        assert asyncio.run(collect(executor, [info])) == []

    ((_, message, aux_logs),) = recorder.errors
    assert "Essential container in task exited" in message and "exit code: 1" in message
    assert "line 7\n    line 8\n    line 9" in message and "line 6" not in message
    saved = (tmp_path / aux_logs[0]).read_text()
    assert saved.splitlines() == [f"line {i}" for i in range(10)]


def test_throttled_status_check_backs_off_and_fails_nothing(account: BatchAccount) -> None:
    account.standard_queues()
    jobs = [FakeJob(rule_name="a"), FakeJob(rule_name="b")]
    executor, recorder = make_executor(jobs)
    for job in jobs:
        executor.run_job(job)
    with Stubber(executor.aws.batch) as stub:
        stub.add_client_error(
            "describe_jobs", service_error_code="TooManyRequestsException", http_status_code=429
        )
        still_active = asyncio.run(collect(executor, recorder.submitted))
    assert still_active == recorder.submitted
    assert recorder.errors == [] and recorder.succeeded == []
    assert executor.next_seconds_between_status_checks > executor.round_seconds
    assert any("throttling" in w for w in recorder.warnings)


def test_job_batch_forgot_fails_after_three_rounds(account: BatchAccount) -> None:
    account.standard_queues()
    job = FakeJob(rule_name="gone")
    executor, recorder = make_executor([job])
    executor.run_job(job)
    (info,) = recorder.submitted
    with Stubber(executor.aws.batch) as stub:
        for _ in range(3):
            stub.add_response("describe_jobs", {"jobs": []})
        for _ in range(2):
            assert asyncio.run(collect(executor, [info])) == [info]
        assert asyncio.run(collect(executor, [info])) == []
    ((_, message, _),) = recorder.errors
    assert "no longer knows" in message


def test_job_stuck_runnable_is_terminated_after_the_wait(account: BatchAccount) -> None:
    account.standard_queues()
    job = FakeJob(rule_name="stuck")
    executor, recorder = make_executor(
        [job], ExecutorSettings(image=IMAGE, s3_prefix=PREFIX, unschedulable_timeout=0)
    )
    executor.run_job(job)
    (info,) = recorder.submitted
    runnable: dict[str, Any] = {
        "jobId": info.external_jobid,
        "jobName": "x",
        "jobQueue": "default",
        "jobDefinition": "d",
        "status": "RUNNABLE",
        "startedAt": 1,
        "statusReason": "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - no instance fits",
    }
    with Stubber(executor.aws.batch) as stub:
        stub.add_response("describe_jobs", {"jobs": [runnable]})
        stub.add_response("terminate_job", {})
        assert asyncio.run(collect(executor, [info])) == []
    ((_, message, _),) = recorder.errors
    assert "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT" in message and "terminated" in message


# -- bad input: one clear error before anything is submitted ----------------------


def _refused(account: BatchAccount, jobs: list[FakeJob], settings: ExecutorSettings) -> str:
    calls = ApiCalls(account.batch)  # a second client on the same moto account
    with pytest.raises(ConfigError) as error:
        make_executor(jobs, settings)
    message = str(error.value)
    assert "\n" not in message
    assert calls.named("SubmitJob") == []
    assert (
        account.batch.list_jobs(jobQueue="default", jobStatus="SUBMITTED")["jobSummaryList"] == []
    )
    return message


def test_unknown_queue_is_refused(account: BatchAccount) -> None:
    account.standard_queues()
    message = _refused(
        account, [FakeJob()], ExecutorSettings(image=IMAGE, s3_prefix=PREFIX, default_queue="nope")
    )
    assert "'nope' does not exist" in message


def test_disabled_queue_is_refused(account: BatchAccount) -> None:
    account.standard_queues()
    ce = account.batch.describe_compute_environments(computeEnvironments=["spot"])
    account.queue("off", ce["computeEnvironments"][0]["computeEnvironmentArn"], state="DISABLED")
    message = _refused(
        account, [FakeJob()], ExecutorSettings(image=IMAGE, s3_prefix=PREFIX, default_queue="off")
    )
    assert "off is DISABLED" in message


def test_missing_image_is_refused(account: BatchAccount) -> None:
    account.standard_queues()
    assert "--awsbatch-image" in _refused(account, [FakeJob()], ExecutorSettings())


def test_job_too_big_for_its_queue_names_rule_request_and_largest(account: BatchAccount) -> None:
    account.standard_queues()
    job = FakeJob(rule_name="assemble", threads=512, resources={"mem_mib": 4000})
    message = _refused(account, [job], ExecutorSettings(image=IMAGE, s3_prefix=PREFIX))
    assert message.startswith("Rule assemble: asks for 512 vCPU, 4000 MiB")
    assert "largest that fits is" in message and "vCPU" in message.split("largest")[1]


def test_gpu_on_fargate_is_refused(account: BatchAccount) -> None:
    fargate = account.compute_environment("fargate", [], kind="FARGATE")
    account.queue("default", fargate)
    account.queue("priority", fargate)
    job = FakeJob(rule_name="train", resources={"gpu": 1})
    settings = ExecutorSettings(
        image=IMAGE, s3_prefix=PREFIX, execution_role="arn:aws:iam::123456789012:role/x"
    )
    assert "Fargate, which has no GPUs" in _refused(account, [job], settings)


def test_fargate_job_is_rounded_up_to_a_valid_pair(account: BatchAccount) -> None:
    fargate = account.compute_environment("fargate", [], kind="FARGATE")
    account.queue("default", fargate)
    account.queue("priority", fargate)
    job = FakeJob(rule_name="small", threads=3, resources={"mem_mib": 5000})
    settings = ExecutorSettings(
        image=IMAGE, s3_prefix=PREFIX, execution_role="arn:aws:iam::123456789012:role/x"
    )
    executor, _ = make_executor([job], settings)
    calls = ApiCalls(executor.aws.batch, executor.aws.submit)
    executor.run_job(job)
    (request,) = calls.named("SubmitJob")
    reqs = {r["type"]: r["value"] for r in request["containerOverrides"]["resourceRequirements"]}
    assert reqs == {"VCPU": "4", "MEMORY": "8192"}
    definition = account.batch.describe_job_definitions(status="ACTIVE")["jobDefinitions"][0]
    assert definition["platformCapabilities"] == ["FARGATE"]


def test_missing_credentials_are_refused(account: BatchAccount, monkeypatch) -> None:
    account.standard_queues()
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert "No AWS credentials" in _refused(
        account, [FakeJob()], ExecutorSettings(image=IMAGE, s3_prefix=PREFIX)
    )


def test_missing_region_is_refused(account: BatchAccount, monkeypatch) -> None:
    account.standard_queues()
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    assert "No AWS region" in _refused(
        account, [FakeJob()], ExecutorSettings(image=IMAGE, s3_prefix=PREFIX)
    )


def test_secret_looking_variables_never_reach_a_job(account: BatchAccount) -> None:
    account.standard_queues()
    env = {"SNAKEMAKE_STORAGE_S3_SECRET_KEY": "s3cr3t", "SNAKEMAKE_STORAGE_S3_RETRIES": "5"}
    job = FakeJob()
    executor, recorder = make_executor([job], envvars=env)
    calls = ApiCalls(executor.aws.batch, executor.aws.submit)
    executor.run_job(job)
    (request,) = calls.named("SubmitJob")
    assert "s3cr3t" not in repr(request)
    assert {"name": "SNAKEMAKE_STORAGE_S3_RETRIES", "value": "5"} in request["containerOverrides"][
        "environment"
    ]
    assert any("SNAKEMAKE_STORAGE_S3_SECRET_KEY" in w for w in recorder.warnings)


def test_stack_outputs_configure_queues_role_and_log_group() -> None:
    """--awsbatch-stack against the project's templates deployed into moto."""
    from pathlib import Path

    import boto3
    from moto import mock_aws

    from snakemake_executor_plugin_awsbatch.sandbox.cfn_deploy import deploy_core_environment

    templates = Path(__file__).parents[2] / "cloudformation"
    with mock_aws(config={"batch": {"use_docker": False}}):
        session = boto3.session.Session(region_name="us-east-1")
        stack = deploy_core_environment(session, templates, stack_name="genomics")
        outputs = {
            o["OutputKey"]: o["OutputValue"]
            for o in session.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0][
                "Outputs"
            ]
        }
        jobs = [FakeJob(rule_name="align"), FakeJob(rule_name="report")]
        settings = ExecutorSettings(image=IMAGE, stack=stack, priority_rules=["report"])
        executor, _ = make_executor(jobs, settings)
        calls = ApiCalls(executor.aws.batch, executor.aws.submit)
        for job in jobs:
            executor.run_job(job)

        assert executor.config.job_role == outputs["JobRoleArn"]
        assert executor.config.log_group == outputs["LogGroupName"]
        assert executor.config.s3_prefix is not None
        assert executor.config.s3_prefix.uri() == outputs["S3Prefix"].rstrip("/")
        queues = [r["jobQueue"] for r in calls.named("SubmitJob")]
        assert queues == [outputs["DefaultJobQueueName"], outputs["PriorityJobQueueName"]]
        definition = session.client("batch").describe_job_definitions(status="ACTIVE")
        props = definition["jobDefinitions"][0]["containerProperties"]
        assert props["jobRoleArn"] == outputs["JobRoleArn"]

        # A setting the user changed from its default wins over the stack.
        mine = outputs["PriorityJobQueueName"]
        explicit = ExecutorSettings(image=IMAGE, stack=stack, default_queue=mine)
        assert make_executor(jobs[:1], explicit)[0].config.default_queue == mine


def test_staged_mode_without_s3_prefix_is_refused(account: BatchAccount) -> None:
    account.standard_queues()
    message = _refused(account, [FakeJob()], ExecutorSettings(image=IMAGE))
    assert "--awsbatch-s3-prefix" in message


def test_missing_bucket_is_refused(account: BatchAccount) -> None:
    account.standard_queues()
    settings = ExecutorSettings(image=IMAGE, s3_prefix="s3://no-such-bucket-here/x")
    message = _refused(account, [FakeJob()], settings)
    assert "Cannot write to s3://no-such-bucket-here/x" in message


# -- array jobs, the report channel, robustness ---------------------------------------


def test_jobs_handed_over_together_and_alike_become_one_array_job(account: BatchAccount) -> None:
    account.standard_queues()
    scatter = [FakeJob(rule_name="scatter") for _ in range(5)]
    other = FakeJob(rule_name="index")
    executor, recorder = make_executor([*scatter, other])
    calls = ApiCalls(executor.aws.batch, executor.aws.submit)

    executor.run_jobs([*scatter, other])

    submits = calls.named("SubmitJob")
    assert [s.get("arrayProperties") for s in submits] == [{"size": 5}, None]
    array_id = recorder.submitted[0].external_jobid.rsplit(":", 1)[0]
    assert [i.external_jobid for i in recorder.submitted[:5]] == [
        f"{array_id}:{n}" for n in range(5)
    ]
    # One command and one pack for all children; each child reads its record by index.
    command = submits[0]["containerOverrides"]["command"]
    pack_uri = next(word for word in command if word.startswith("s3://"))
    width = int(command[command.index("--record-bytes") + 1])
    bucket, key = pack_uri.removeprefix("s3://").split("/", 1)
    s3 = boto3.client("s3")
    for n, info in enumerate(recorder.submitted[:5]):
        span = f"bytes={n * width}-{(n + 1) * width - 1}"
        body = s3.get_object(Bucket=bucket, Key=key, Range=span)["Body"].read()
        manifest = json.loads(body)
        assert (
            "'scatter:'" in manifest["command"]
            and manifest["report_uri"] == info.aux["state"].report_uri
        )
        assert manifest["record"]["index"] == str(n)


def test_no_arrays_submits_every_job_alone(account: BatchAccount) -> None:
    account.standard_queues()
    jobs = [FakeJob(rule_name="scatter") for _ in range(3)]
    executor, _ = make_executor(
        jobs, ExecutorSettings(image=IMAGE, s3_prefix=PREFIX, no_arrays=True)
    )
    calls = ApiCalls(executor.aws.batch, executor.aws.submit)
    executor.run_jobs(jobs)
    assert [s.get("arrayProperties") for s in calls.named("SubmitJob")] == [None] * 3


def test_a_succeeded_report_ends_the_job_without_asking_batch(account: BatchAccount) -> None:
    account.standard_queues()
    jobs = [FakeJob(rule_name="scatter") for _ in range(3)]
    executor, recorder = make_executor(jobs)
    executor.run_jobs(jobs)
    # As if Batch had just been asked: this round may only look at the reports.
    executor.follower.describe_every = 3600
    executor.follower._last_describe = time.monotonic()
    calls = ApiCalls(executor.aws.batch, executor.aws.submit)
    _write_report(executor, recorder.submitted[1], "succeeded")

    still = asyncio.run(collect(executor, recorder.submitted))

    assert recorder.succeeded == [recorder.submitted[1]]
    assert still == [recorder.submitted[0], recorder.submitted[2]]
    assert calls.named("DescribeJobs") == []
    # The ended job's records are gone, so a crash leaves only unfinished jobs behind;
    # the array's pack stays while other children may still start.
    state = recorder.submitted[1].aux["state"]
    assert executor.stager.read_report(state.report_uri) is None
    bucket, key = state.manifest_uri.removeprefix("s3://").split("/", 1)
    assert key.endswith("/manifests.pack")
    boto3.client("s3").head_object(Bucket=bucket, Key=key)
    for info in still:
        _write_report(executor, info, "succeeded")
    assert asyncio.run(collect(executor, still)) == []
    listing = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=key)
    assert "Contents" not in listing, "the pack outlived its last child"


def test_cancel_terminates_a_whole_array_in_one_call(account: BatchAccount) -> None:
    account.standard_queues()
    jobs = [FakeJob(rule_name="long") for _ in range(4)]
    executor, recorder = make_executor(jobs)
    executor.run_jobs(jobs)
    calls = ApiCalls(executor.aws.batch, executor.aws.submit)

    executor.cancel_jobs(recorder.submitted)

    (terminated,) = calls.named("TerminateJob")
    assert terminated["jobId"] == recorder.submitted[0].external_jobid.rsplit(":", 1)[0]


def test_status_checks_before_start_up_ended_keep_every_job() -> None:
    from snakemake_executor_plugin_awsbatch.executor import Executor

    early = Executor.__new__(Executor)  # as Snakemake's status thread may see it
    jobs = [object(), object()]
    assert asyncio.run(collect(early, jobs)) == jobs


def test_an_s3_failure_in_a_round_keeps_the_jobs(account: BatchAccount) -> None:
    account.standard_queues()
    job = FakeJob(rule_name="a")
    executor, recorder = make_executor([job])
    executor.run_jobs([job])
    with Stubber(executor.stager.client) as s3, Stubber(executor.aws.batch) as batch:
        s3.add_client_error("list_objects_v2", "SlowDown", http_status_code=503)
        batch.add_client_error("describe_jobs", "ServerException", http_status_code=500)
        still = asyncio.run(collect(executor, recorder.submitted))
    assert still == recorder.submitted and recorder.errors == []
    assert any("reports" in w for w in recorder.warnings)
