"""up / up again / status / env / down / down again, and run, on a sandbox of their own."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sandbox_helpers import Jobs, cli, processes_mentioning

from snakemake_executor_plugin_awsbatch.sandbox import exports, podman, testing
from snakemake_executor_plugin_awsbatch.sandbox.processes import wait_until
from snakemake_executor_plugin_awsbatch.sandbox.state import StateDir
from snakemake_executor_plugin_awsbatch.stack import read_stack_outputs

pytestmark = pytest.mark.e2e


def _status(state_dir) -> dict:
    result = cli("status", "--json", "--state-dir", str(state_dir))
    return json.loads(result.stdout)


def test_up_is_idempotent_and_down_leaves_nothing_behind(tmp_path):
    state_dir = tmp_path / "sandbox"
    try:
        first = cli("up", "--state-dir", str(state_dir))
        assert first.returncode == 0, first.stderr
        assert "sandbox started" in first.stdout
        running = _status(state_dir)

        second = cli("up", "--state-dir", str(state_dir))
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stdout
        again = _status(state_dir)
        assert (again["port"], again["moto_pid"], again["podman_pid"]) == (
            running["port"],
            running["moto_pid"],
            running["podman_pid"],
        )

        status = cli("status", "--state-dir", str(state_dir))
        assert status.returncode == 0
        assert f"http://127.0.0.1:{running['port']}" in status.stdout
        assert running["image"] in status.stdout
        assert f"stack         {running['stack']} " in status.stdout

        exported = _exports(state_dir)
        assert exported["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{running['port']}"
        assert exported["SNAKEMAKE_AWSBATCH_DEFAULT_QUEUE"] == "default"
        assert exported["SNAKEMAKE_AWSBATCH_PRIORITY_QUEUE"] == "priority"
        assert exported["SNAKEMAKE_AWSBATCH_S3_PREFIX"].startswith("s3://")
        assert os.path.isdir(exported["SNAKEMAKE_AWSBATCH_SCRATCH_ROOT"])

        _environment_is_the_stacks(exported, running["stack"])
        # Another sandbox's rebuild prunes superseded images; this one's is held.
        held = podman.podman(StateDir(state_dir), "rmi", running["image"], check=False)
        assert held.returncode != 0
        container = _start_endless_job(state_dir, exported)

        down = cli("down", "--state-dir", str(state_dir))
        assert down.returncode == 0, down.stderr
        assert f"job container {container}" in down.stdout
    finally:
        cli("down", "--state-dir", str(state_dir))

    assert processes_mentioning(str(state_dir)) == []
    assert podman.job_containers(StateDir(state_dir)) == []
    assert _holding_containers(StateDir(state_dir)) == []
    assert not (state_dir / "state.json").exists()
    assert "nothing runs" in cli("down", "--state-dir", str(state_dir)).stdout


def _holding_containers(state: StateDir) -> list[str]:
    label = f"label={podman.HOLD_LABEL}={state.sandbox_id}"
    listed = podman.podman(state, "ps", "--all", "--filter", label, "--format", "{{.Names}}")
    return listed.stdout.split()


def _exports(state_dir) -> dict[str, str]:
    """Evaluate `env`'s output in bash, as a user would, and read the variables back."""
    script = f'eval "$({_cli_line()} env --state-dir {state_dir})" && env -0'
    output = subprocess.run(["bash", "-c", script], capture_output=True, check=True).stdout
    pairs = (item.decode().split("=", 1) for item in output.split(b"\0") if b"=" in item)
    return dict(pairs)


def _cli_line() -> str:
    return f"{sys.executable} -m snakemake_executor_plugin_awsbatch.sandbox"


def _environment_is_the_stacks(exported: dict[str, str], stack_name: str) -> None:
    """`env` exports the deployed stack's outputs; its queues are as the templates define."""
    session = exports.SandboxSession(exported["AWS_ENDPOINT_URL"])
    cfn, batch = session.client("cloudformation"), session.client("batch")
    # Read the way `--awsbatch-stack` reads it.
    stack = read_stack_outputs(cfn, stack_name)
    assert (stack.default_queue, stack.priority_queue) == ("default", "priority")
    assert exported["SNAKEMAKE_AWSBATCH_DEFAULT_QUEUE"] == stack.default_queue
    assert exported["SNAKEMAKE_AWSBATCH_PRIORITY_QUEUE"] == stack.priority_queue
    assert exported["SNAKEMAKE_AWSBATCH_S3_PREFIX"] == stack.s3_prefix
    assert stack.s3_prefix.startswith(f"s3://{stack.bucket}/")
    session.client("s3").head_bucket(Bucket=stack.bucket)
    # moto's Batch logs every job there; the plugin's default, so `env` need not say it.
    assert stack.log_group == "/aws/batch/job"
    assert "SNAKEMAKE_AWSBATCH_LOG_GROUP" not in exported

    outputs = {
        o["OutputKey"]: o["OutputValue"]
        for o in cfn.describe_stacks(StackName=stack_name)["Stacks"][0]["Outputs"]
    }
    spot, on_demand = outputs["SpotComputeEnvironmentArn"], outputs["OnDemandComputeEnvironmentArn"]
    queues = {q["jobQueueName"]: q for q in batch.describe_job_queues()["jobQueues"]}
    assert set(queues) == {"default", "priority", "multinode"}
    assert stack.multinode_queue == exported["SNAKEMAKE_AWSBATCH_MULTINODE_QUEUE"] == "multinode"

    def order(queue: str) -> list[str]:
        ranked = sorted(queues[queue]["computeEnvironmentOrder"], key=lambda o: o["order"])
        return [o["computeEnvironment"] for o in ranked]

    assert order("default") == [spot]
    assert order("priority") == [on_demand, spot]
    (multinode,) = order("multinode")
    assert queues["priority"]["priority"] > queues["default"]["priority"]
    assert all((q["state"], q["status"]) == ("ENABLED", "VALID") for q in queues.values())

    described = batch.describe_compute_environments()["computeEnvironments"]
    environments = {ce["computeEnvironmentArn"]: ce for ce in described}
    assert set(environments) == {spot, on_demand, multinode}

    def shape(arn: str) -> tuple[str, str, str]:
        resources = environments[arn]["computeResources"]
        assert resources["launchTemplate"]["launchTemplateId"] == outputs["LaunchTemplateId"]
        return environments[arn]["type"], resources["type"], resources["allocationStrategy"]

    assert shape(spot) == ("MANAGED", "SPOT", "SPOT_PRICE_CAPACITY_OPTIMIZED")
    assert shape(on_demand) == ("MANAGED", "EC2", "BEST_FIT_PROGRESSIVE")
    assert shape(multinode) == ("MANAGED", "EC2", "BEST_FIT_PROGRESSIVE")
    assert len(environments[multinode]["computeResources"]["subnets"]) == 1


def _start_endless_job(state_dir, exported: dict[str, str]) -> str:
    state = StateDir(state_dir)
    running = testing.RunningSandbox(state, exported, started_here=False)
    jobs = Jobs(running)
    jobs.submit("endless", "while true; do sleep 1; done")
    assert wait_until(lambda: podman.job_containers(state), 60), "the job never started"
    return podman.job_containers(state)[0]


def test_run_takes_the_sandbox_down_and_returns_the_commands_status(tmp_path):
    state_dir = tmp_path / "sandbox"
    # boto3 with nothing but the environment `run` sets finds the sandbox's queues.
    script = (
        "import boto3, sys; "
        'found = boto3.client("batch").describe_job_queues()["jobQueues"]; '
        'sys.exit(7 if "default" in [q["jobQueueName"] for q in found] else 1)'
    )
    try:
        result = cli("run", "--state-dir", str(state_dir), "--", sys.executable, "-c", script)
    finally:
        cli("down", "--state-dir", str(state_dir))

    assert result.returncode == 7, result.stderr
    assert processes_mentioning(str(state_dir)) == []
    assert not (state_dir / "state.json").exists()
