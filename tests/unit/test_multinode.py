"""Multi-node parallel rules (`awsbatch_nodes=N`) on the submitting side, against moto's
in-process Batch API: definition, request, manifest, queue checks, the failure's log.

The nodes themselves run in tests/e2e/test_multinode.py (sandbox, Open MPI).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from snakemake_executor_plugin_awsbatch.errors import ConfigError
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

MPI = {"awsbatch_nodes": 3, "mem_mb": 2000}


def settings(**extra: object) -> ExecutorSettings:
    return ExecutorSettings(image=IMAGE, s3_prefix=PREFIX, **extra)  # type: ignore[arg-type]


def multinode_queues(account: BatchAccount) -> None:
    account.standard_queues()
    ondemand = account.compute_environment("mpi", ["c5n"], kind="EC2")
    account.queue("multinode", ondemand)


def registered_definitions() -> list[dict]:
    """What was registered, as moto keeps it (its DescribeJobDefinitions omits
    nodeProperties)."""
    from moto.batch.models import batch_backends
    from moto.core import DEFAULT_ACCOUNT_ID

    backend = batch_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    return [
        {
            "type": d.type,
            "nodeProperties": d.node_properties,
            "platformCapabilities": d.platform_capabilities,
        }
        for d in backend._job_definitions.values()
    ]


def manifest_of(request: dict) -> dict:
    overrides = request["nodeOverrides"]["nodePropertyOverrides"][0]["containerOverrides"]
    bucket, key = overrides["command"][3].removeprefix("s3://").split("/", 1)
    return json.loads(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def test_a_multinode_rule_is_one_mnp_job_of_alike_nodes(account: BatchAccount) -> None:
    multinode_queues(account)
    jobs = [FakeJob(rule_name="mpi", threads=4, resources=dict(MPI)) for _ in range(2)]
    executor, recorder = make_executor(jobs, settings(multinode_queue="multinode"))
    calls = ApiCalls(executor.aws.batch, executor.aws.submit)
    executor.run_jobs(jobs)  # alike, handed over together: still not an array

    requests = calls.named("SubmitJob")
    assert len(requests) == 2
    for request in requests:
        assert "arrayProperties" not in request and "containerOverrides" not in request
        assert request["jobQueue"] == "multinode"
        (override,) = request["nodeOverrides"]["nodePropertyOverrides"]
        assert override["targetNodes"] == "0:"
        resources = {
            r["type"]: r["value"] for r in override["containerOverrides"]["resourceRequirements"]
        }
        assert resources == {"VCPU": "4", "MEMORY": "1908"}  # each node sized from the rule
    (definition,) = registered_definitions()
    assert definition["type"] == "multinode"
    properties = definition["nodeProperties"]
    assert properties["numNodes"] == 3 and properties["mainNode"] == 0
    (node_range,) = properties["nodeRangeProperties"]
    assert node_range["targetNodes"] == "0:" and node_range["container"]["image"] == IMAGE
    assert definition["platformCapabilities"] == ["EC2"]

    first, second = (manifest_of(r)["nodes"] for r in requests)
    assert (first["count"], first["slots"], first["join_seconds"]) == (3, 4, 600)
    assert re.fullmatch(r"[0-9a-f]{64}", first["secret"]) and first["secret"] != second["secret"]
    assert any(
        "multi-node parallel job" in line and "3 nodes of 4 vCPU" in line for line in recorder.infos
    )


def test_a_single_node_rule_is_unchanged_next_to_it(account: BatchAccount) -> None:
    multinode_queues(account)
    jobs = [FakeJob(rule_name="one", resources={"awsbatch_nodes": 1})]
    executor, _ = make_executor(jobs, settings(multinode_queue="multinode"))
    calls = ApiCalls(executor.aws.batch, executor.aws.submit)
    executor.run_jobs(jobs)
    (request,) = calls.named("SubmitJob")
    assert request["jobQueue"] == "default" and "containerOverrides" in request
    assert (
        "nodes" not in manifest_of_single(request) or manifest_of_single(request)["nodes"] is None
    )


def manifest_of_single(request: dict) -> dict:
    bucket, key = request["containerOverrides"]["command"][3].removeprefix("s3://").split("/", 1)
    return json.loads(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


@pytest.mark.parametrize(
    ("resources", "extra", "expected"),
    [
        (MPI, {}, "Rule mpi asks for 3 nodes (awsbatch_nodes) but no multi-node queue is set"),
        (
            MPI,
            {"multinode_queue": "default"},
            "queue default cannot run multi-node parallel jobs: its compute environments "
            "spot (SPOT)",
        ),
        (MPI, {"multinode_queue": "nowhere"}, "Batch job queue 'nowhere' does not exist"),
        (
            {"awsbatch_nodes": "three"},
            {},
            "resource awsbatch_nodes='three' is not a whole number of nodes",
        ),
        ({"awsbatch_nodes": 2.5}, {}, "resource awsbatch_nodes=2.5 is not a whole number"),
        ({"awsbatch_nodes": 0}, {}, "resource awsbatch_nodes=0 is not a whole number"),
        (
            {"awsbatch_node": 3},  # a typo would otherwise run the rule on one node
            {},
            "Rule mpi: resource awsbatch_node is not one the plugin reads; it reads "
            "awsbatch_image, awsbatch_node_inputs, awsbatch_nodes, awsbatch_queue",
        ),
    ],
)
def test_bad_multinode_requests_are_refused_before_anything_is_submitted(
    account: BatchAccount, resources: dict, extra: dict, expected: str
) -> None:
    multinode_queues(account)
    with pytest.raises(ConfigError, match=re.escape(expected)):
        make_executor([FakeJob(rule_name="mpi", resources=dict(resources))], settings(**extra))
    assert account.batch.list_jobs(jobQueue="multinode")["jobSummaryList"] == []


def test_the_join_timeout_travels_and_bad_values_are_refused(account: BatchAccount) -> None:
    multinode_queues(account)
    job = FakeJob(rule_name="mpi", resources=dict(MPI))
    executor, _ = make_executor([job], settings(multinode_queue="multinode", node_join_timeout=45))
    calls = ApiCalls(executor.aws.submit)
    executor.run_job(job)
    assert manifest_of(calls.named("SubmitJob")[0])["nodes"]["join_seconds"] == 45
    with pytest.raises(ConfigError, match="--awsbatch-node-join-timeout: 5 is out of range"):
        make_executor([job], settings(multinode_queue="multinode", node_join_timeout=5))


def test_a_failed_multinode_job_shows_its_main_node_log(
    account: BatchAccount, tmp_path: Path
) -> None:
    multinode_queues(account)
    job = FakeJob(rule_name="mpi", resources=dict(MPI))
    executor, recorder = make_executor(
        [job], settings(multinode_queue="multinode", log_tail_lines=2)
    )
    executor.run_job(job)
    (info,) = recorder.submitted
    stream = "mnp/default/main"
    account.logs.create_log_group(logGroupName="/aws/batch/job")
    account.logs.create_log_stream(logGroupName="/aws/batch/job", logStreamName=stream)
    now = int(time.time() * 1000)
    account.logs.put_log_events(
        logGroupName="/aws/batch/job",
        logStreamName=stream,
        logEvents=[{"timestamp": now + i, "message": f"rank line {i}"} for i in range(5)],
    )
    parent = {
        "jobId": info.external_jobid,
        "jobName": "x",
        "jobQueue": "multinode",
        "jobDefinition": "d",
        "status": "FAILED",
        "startedAt": 1,
        "statusReason": "Essential container in task exited",
        "nodeProperties": {"numNodes": 3, "mainNode": 0, "nodeRangeProperties": []},
    }
    main = {
        **parent,
        "jobId": f"{info.external_jobid}#0",
        "container": {"exitCode": 5, "logStreamName": stream},
    }
    main.pop("nodeProperties")
    with Stubber(executor.aws.batch) as stub:
        stub.add_response("describe_jobs", {"jobs": [parent]})
        stub.add_response("describe_jobs", {"jobs": [main]}, {"jobs": [f"{info.external_jobid}#0"]})
        assert asyncio.run(collect(executor, [info])) == []
    ((_, message, _),) = recorder.errors
    assert f"/aws/batch/job/{stream})" in message and "rank line 3\n    rank line 4" in message


def test_the_stack_supplies_the_multinode_queue() -> None:
    from moto import mock_aws

    from snakemake_executor_plugin_awsbatch.sandbox.cfn_deploy import deploy_core_environment

    templates = Path(__file__).parents[2] / "cloudformation"
    with mock_aws(config={"batch": {"use_docker": False}}):
        session = boto3.session.Session(region_name="us-east-1")
        stack = deploy_core_environment(
            session,
            templates,
            stack_name="genomics",
            parameters={"CreateMultiNodeEnvironment": "true"},
        )
        outputs = {
            o["OutputKey"]: o["OutputValue"]
            for o in session.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0][
                "Outputs"
            ]
        }
        job = FakeJob(rule_name="mpi", resources=dict(MPI))
        executor, _ = make_executor([job], ExecutorSettings(image=IMAGE, stack=stack))
        calls = ApiCalls(executor.aws.submit)
        executor.run_job(job)
        assert executor.config.multinode_queue == outputs["MultiNodeJobQueueName"]
        assert calls.named("SubmitJob")[0]["jobQueue"] == outputs["MultiNodeJobQueueName"]
