"""Real Batch jobs on the sandbox through plain boto3: containers, S3, logs, signals."""

from __future__ import annotations

import uuid

import pytest

from snakemake_executor_plugin_awsbatch.sandbox.processes import wait_until

pytestmark = pytest.mark.e2e


def test_job_reaches_s3_and_logs_without_credentials_in_its_definition(jobs, sandbox):
    key = f"roundtrip/{uuid.uuid4().hex}"
    jobs.s3.put_object(Bucket=jobs.bucket, Key=f"{key}/in.txt", Body=b"ping")
    marker = uuid.uuid4().hex
    # Inside the job: boto3 with no endpoint, no credentials, no region given; the sandbox's
    # Batch gives the container the endpoint and a container credentials endpoint, as ECS
    # gives the job role's credentials.
    script = (
        f"echo {marker}; touch /scratch/{marker}; python -c '"
        'import boto3; s3 = boto3.client("s3"); '
        f'body = s3.get_object(Bucket="{jobs.bucket}", Key="{key}/in.txt")["Body"].read(); '
        f's3.put_object(Bucket="{jobs.bucket}", Key="{key}/out.txt", Body=body + b" pong")\''
    )
    job = jobs.wait(jobs.submit("roundtrip", script, scratch=True))

    assert job["status"] == "SUCCEEDED", job.get("statusReason")
    assert job["container"]["exitCode"] == 0
    out = jobs.s3.get_object(Bucket=jobs.bucket, Key=f"{key}/out.txt")["Body"].read()
    assert out == b"ping pong"
    assert marker in jobs.log_lines(job)
    assert (sandbox.scratch_dir / marker).exists()
    defined = {e["name"] for e in job["container"]["environment"]}
    assert not defined & {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_job_runs_the_submitting_sides_versions(jobs):
    import boto3
    import snakemake

    script = (
        "cd /work && python -c 'import snakemake, boto3, "
        "snakemake_executor_plugin_awsbatch, snakemake_storage_plugin_s3; "
        "print(snakemake.__version__, boto3.__version__)'"
    )
    job = jobs.wait(jobs.submit("versions", script))

    assert job["status"] == "SUCCEEDED", job.get("statusReason")
    assert f"{snakemake.__version__} {boto3.__version__}" in jobs.log_lines(job)


def test_failing_job_is_failed_with_its_exit_code(jobs):
    job = jobs.wait(jobs.submit("failing", "echo about to fail >&2; exit 3"))

    assert job["status"] == "FAILED"
    assert job["container"]["exitCode"] == 3
    assert job["statusReason"] == "Essential container in task exited"
    assert "about to fail" in jobs.log_lines(job)


def test_terminate_sends_sigterm_before_killing(jobs, sandbox):
    # bash is PID 1 here and only reacts to SIGTERM through a trap; the trap runs between
    # two short sleeps. The file in scratch says the trap is installed.
    ready = sandbox.scratch_dir / f"trap-{uuid.uuid4().hex}"
    script = (
        f"trap 'echo caught SIGTERM; exit 143' TERM; touch /scratch/{ready.name}; "
        "while true; do sleep 0.1; done"
    )
    job_id = jobs.submit("terminated", script, scratch=True)
    assert wait_until(ready.exists, 60), "the job never started"

    jobs.batch.terminate_job(jobId=job_id, reason="Host EC2 (instance i-0) terminated.")
    job = jobs.wait(job_id)

    assert job["status"] == "FAILED"
    assert job["statusReason"] == "Host EC2 (instance i-0) terminated."
    assert job["container"]["exitCode"] == 143
    assert jobs.log_lines(job)[-1] == "caught SIGTERM"
    # moto removes the container right after it marks the job stopped.
    assert wait_until(lambda: not _containers_named(sandbox, "terminated-"), 30)


def _containers_named(sandbox, prefix: str) -> list[str]:
    return [name for name in sandbox.job_containers() if name.startswith(prefix)]


def test_timeout_sends_sigterm_and_says_why(jobs, sandbox):
    stopped = sandbox.scratch_dir / f"timeout-{uuid.uuid4().hex}"
    script = f"trap 'touch /scratch/{stopped.name}; exit 143' TERM; while true; do sleep 0.1; done"
    job_id = jobs.submit("timed-out", script, scratch=True, timeout_seconds=3)
    job = jobs.wait(job_id)

    assert job["status"] == "FAILED"
    assert job["statusReason"] == "Job attempt duration exceeded timeout"
    # The trap ran: the container got SIGTERM, not an immediate SIGKILL.
    assert wait_until(stopped.exists, 30)
