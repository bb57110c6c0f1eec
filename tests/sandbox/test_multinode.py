"""Multi-node parallel jobs in the sandbox behave as on AWS Batch (moto_patches 9, multinode.py).

Plain boto3, no plugin: a multinode job definition as the plugin registers it (one node
range "0:"), submitted with nodeOverrides; real containers on the sandbox's node network.
The nodes tell the tests what they did through a host directory every node mounts at
/shared, as an EFS file system would be; each child node has a scratch disk of its own.
"""

from __future__ import annotations

import ipaddress
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from snakemake_executor_plugin_awsbatch.sandbox import multinode, node_network, podman, prereqs
from snakemake_executor_plugin_awsbatch.sandbox.processes import wait_until
from snakemake_executor_plugin_awsbatch.sandbox.state import StateDir

pytestmark = pytest.mark.e2e

MAIN_PORT, CHILD_PORT = 5000, 6000
EXIT_REASON = "Essential container in task exited"

# Each node reports itself as one JSON line. The children announce their address to the
# main node on MAIN_PORT, the main node connects back to each child's CHILD_PORT, so the
# nodes reach each other both ways; the main node ends only once every child is done.
NODE_PROGRAM = f"""
import json, os, socket, time
index = int(os.environ["AWS_BATCH_JOB_NODE_INDEX"])
count = int(os.environ["AWS_BATCH_JOB_NUM_NODES"])
host = socket.gethostname()
report = {{
    "index": index,
    "hostname": host,
    "address": socket.gethostbyname(host),
    "env": {{k: v for k, v in os.environ.items() if k.startswith("AWS_BATCH_")}},
    "defined": os.environ.get("DEFINED"),
    "overridden": os.environ.get("OVERRIDDEN"),
}}
if index == int(os.environ["AWS_BATCH_JOB_MAIN_NODE_INDEX"]):
    server = socket.create_server(("", {MAIN_PORT}))
    server.settimeout(60)
    report["peers"] = []
    for _ in range(count - 1):
        conn, (seen_as, _) = server.accept()
        with conn:
            child = json.loads(conn.makefile().readline())
        with socket.create_connection((child["address"], {CHILD_PORT}), timeout=10) as back:
            back.sendall(b"ack\\n")
            done = back.makefile().readline().strip()
        report["peers"].append({{"seen_as": seen_as, "done": done, **child}})
    print(json.dumps(report), flush=True)
else:
    listener = socket.create_server(("", {CHILD_PORT}))
    listener.settimeout(60)
    main = os.environ["AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS"]
    for _ in range(300):
        try:
            conn = socket.create_connection((main, {MAIN_PORT}), timeout=2)
            break
        except OSError:
            time.sleep(0.1)
    announce = json.dumps({{"index": index, "address": report["address"]}}) + "\\n"
    with conn:
        conn.sendall(announce.encode())
    back, _ = listener.accept()
    with back:
        report["ack"] = back.makefile().readline().strip()
        print(json.dumps(report), flush=True)
        back.sendall(b"done\\n")
"""
# The node reaches the sandbox's moto (endpoint and credentials as a job gets them).
DESCRIBE_ITSELF = (
    "import boto3, os; batch = boto3.client('batch'); "
    "job = batch.describe_jobs(jobs=[os.environ['AWS_BATCH_JOB_ID']])['jobs'][0]; "
    "print('describes itself', job['status'])"
)
NODE_SCRIPT = (
    'mkdir -p "/shared/$RUN" && hostname > "/shared/$RUN/$AWS_BATCH_JOB_NODE_INDEX" && '
    '/opt/venv/bin/python -c "$DESCRIBE_ITSELF" && exec /usr/bin/python3 -c "$PROG"'
)
# Children wait to be stopped (trapping SIGTERM: a shell as PID 1 ignores it otherwise).
CHILD_WAITS = (
    "trap 'exit 143' TERM; mkdir -p \"/shared/$RUN\"; "
    'touch "/shared/$RUN/$AWS_BATCH_JOB_NODE_INDEX"; '
    "sleep 100000 & wait"
)


@pytest.fixture(autouse=True)
def _multinode_sandbox(sandbox) -> None:
    if "SNAKEMAKE_AWSBATCH_MULTINODE_QUEUE" not in sandbox.env:
        pytest.fail(f"the sandbox in {sandbox.state_dir} predates multi-node jobs: down, up")


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _environment(**variables: str) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in variables.items()]


def _shared(sandbox) -> Path:
    """The host directory every node mounts at /shared, as a shared file system."""
    path = sandbox.state_dir / "shared"
    path.mkdir(exist_ok=True)
    return path


def _define(jobs, name: str, num_nodes: int, command: list[str], **variables: str) -> str:
    """A multinode definition as the plugin registers one: one range "0:", the container
    properties a single job's definition has; the instance's scratch disk at /scratch and
    the shared directory at /shared."""
    disks = {"scratch": jobs.sandbox.scratch_dir, "shared": _shared(jobs.sandbox)}
    container = {
        "image": jobs.sandbox.image,
        "command": command,
        "resourceRequirements": [
            {"type": "VCPU", "value": "1"},
            {"type": "MEMORY", "value": "256"},
        ],
        "environment": _environment(**variables),
        "volumes": [{"name": n, "host": {"sourcePath": str(path)}} for n, path in disks.items()],
        "mountPoints": [
            {"sourceVolume": n, "containerPath": f"/{n}", "readOnly": False} for n in disks
        ],
    }
    return jobs.batch.register_job_definition(
        jobDefinitionName=name,
        type="multinode",
        nodeProperties={
            "numNodes": num_nodes,
            "mainNode": 0,
            "nodeRangeProperties": [{"targetNodes": "0:", "container": container}],
        },
    )["jobDefinitionArn"]


def _submit(jobs, name: str, definition: str, overrides: dict[str, Any], **request: Any) -> str:
    return jobs.batch.submit_job(
        jobName=name,
        jobQueue=jobs.sandbox.env["SNAKEMAKE_AWSBATCH_MULTINODE_QUEUE"],
        jobDefinition=definition,
        nodeOverrides=overrides,
        tags={"snakemake-run": name},
        **request,
    )["jobId"]


def _shell(jobs, name: str, num_nodes: int, main: str, child: str, **request: Any) -> str:
    """A job whose main node runs `main`, its children `child` (both /bin/sh scripts)."""
    script = f'if [ "$AWS_BATCH_JOB_NODE_INDEX" = 0 ]; then {main}; else {child}; fi'
    definition = _define(jobs, name, num_nodes, ["/bin/sh", "-c", script], RUN=name)
    return _submit(jobs, name, definition, {"numNodes": num_nodes}, **request)


def _nodes(jobs, job_id: str, count: int) -> list[dict[str, Any]]:
    found = jobs.batch.describe_jobs(jobs=[f"{job_id}#{i}" for i in range(count)])["jobs"]
    return sorted(found, key=lambda node: node["nodeDetails"]["nodeIndex"])


def _containers_of(sandbox, job_id: str) -> list[str]:
    return [name for name in sandbox.job_containers() if job_id in name]


def test_nodes_run_together_each_on_its_own_address_and_reach_each_other(jobs, sandbox):
    name = _name("mnp")
    definition = _define(
        jobs,
        name,
        2,  # nodeOverrides.numNodes makes it 3
        ["/bin/sh", "-c", "exit 9"],  # replaced by the override's command
        DEFINED="definition",
        OVERRIDDEN="definition",
        RUN=name,
        PROG=NODE_PROGRAM,
        DESCRIBE_ITSELF=DESCRIBE_ITSELF,
    )
    overrides = {
        "numNodes": 3,
        "nodePropertyOverrides": [
            {
                "targetNodes": "0:",
                "containerOverrides": {
                    "command": ["/bin/sh", "-c", NODE_SCRIPT],
                    "environment": _environment(OVERRIDDEN="override"),
                    "resourceRequirements": [{"type": "MEMORY", "value": "512"}],
                },
            }
        ],
    }
    job_id = _submit(jobs, name, definition, overrides, retryStrategy={"attempts": 1})
    job = jobs.wait(job_id, timeout=120)

    nodes = _nodes(jobs, job_id, 3)
    logs = [jobs.log_lines(node) for node in nodes]
    assert job["status"] == "SUCCEEDED", (job, nodes, logs)
    assert job["nodeProperties"]["numNodes"] == 3
    assert job["nodeProperties"]["mainNode"] == 0
    assert job["nodeProperties"]["nodeRangeProperties"][0]["targetNodes"] == "0:"
    assert "logStreamName" not in job.get("container", {})
    assert job["container"]["exitCode"] == 0
    assert len(job["attempts"]) == 1

    reports = [json.loads(next(x for x in lines if x.startswith("{"))) for lines in logs]
    assert all("describes itself RUNNING" in lines for lines in logs), logs
    subnet = ipaddress.ip_network(sandbox.state.read()["node_network"]["subnet"])
    addresses = [report["address"] for report in reports]
    assert len(set(addresses)) == 3
    assert all(ipaddress.ip_address(address) in subnet for address in addresses)
    assert len({report["hostname"] for report in reports}) == 3
    for index, (node, report) in enumerate(zip(nodes, reports, strict=True)):
        assert node["jobId"] == f"{job_id}#{index}"
        assert node["status"] == "SUCCEEDED"
        assert node["nodeDetails"] == {"nodeIndex": index, "isMainNode": index == 0}
        assert node["container"]["networkInterfaces"] == [{"privateIpv4Address": report["address"]}]
        assert (report["defined"], report["overridden"]) == ("definition", "override")
        expected = {
            "AWS_BATCH_JOB_ID": f"{job_id}#{index}",
            "AWS_BATCH_JOB_NODE_INDEX": str(index),
            "AWS_BATCH_JOB_NUM_NODES": "3",
            "AWS_BATCH_JOB_MAIN_NODE_INDEX": "0",
            "AWS_BATCH_JOB_ATTEMPT": "1",
            "AWS_BATCH_JQ_NAME": sandbox.env["SNAKEMAKE_AWSBATCH_MULTINODE_QUEUE"],
        }
        if index:
            expected["AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS"] = addresses[0]
            assert report["ack"] == "ack"
        assert report["env"] == expected
        resources = {r["type"]: r["value"] for r in node["container"]["resourceRequirements"]}
        assert resources == {"VCPU": "1", "MEMORY": "512"}
    assert nodes[0]["container"]["exitCode"] == 0
    peers = sorted(reports[0]["peers"], key=lambda peer: peer["index"])
    assert [(p["index"], p["seen_as"], p["done"]) for p in peers] == [
        (1, addresses[1], "done"),
        (2, addresses[2], "done"),
    ]
    assert len({node["container"]["logStreamName"] for node in nodes}) == 3
    written = sorted(path.name for path in (_shared(sandbox) / name).iterdir())
    assert written == ["0", "1", "2"]

    listed = jobs.batch.list_jobs(multiNodeJobId=job_id)["jobSummaryList"]
    assert sorted(summary["jobId"] for summary in listed) == [f"{job_id}#{i}" for i in range(3)]
    assert {s["jobId"]: s["nodeProperties"]["isMainNode"] for s in listed}[f"{job_id}#0"]
    queue = sandbox.env["SNAKEMAKE_AWSBATCH_MULTINODE_QUEUE"]
    in_queue = jobs.batch.list_jobs(jobQueue=queue, jobStatus="SUCCEEDED")["jobSummaryList"]
    assert job_id in {summary["jobId"] for summary in in_queue}
    assert _containers_of(sandbox, job_id) == []


def test_each_child_node_has_a_scratch_disk_of_its_own(jobs, sandbox):
    name = _name("mnp-disk")
    # Each node writes a file on its scratch disk and lists what it finds there; the
    # main node ends once the child has listed.
    lists = 'touch "/scratch/$RUN-$AWS_BATCH_JOB_NODE_INDEX"; mkdir -p "/shared/$RUN"; '
    lists += 'ls /scratch | grep "^$RUN-" > "/shared/$RUN/$AWS_BATCH_JOB_NODE_INDEX"'
    main = f'{lists}; until [ -s "/shared/$RUN/1" ]; do sleep 0.1; done'
    job = jobs.wait(_shell(jobs, name, 2, main, lists), timeout=90)

    assert job["status"] == "SUCCEEDED"
    seen = {i: (_shared(sandbox) / name / str(i)).read_text().split() for i in range(2)}
    assert seen == {0: [f"{name}-0"], 1: [f"{name}-1"]}
    assert (sandbox.scratch_dir / f"{name}-0").exists()
    child_disk = multinode.node_disk(sandbox.state.node_disks, job["jobId"], 1)
    assert sorted(path.name for path in child_disk.iterdir()) == [f"{name}-1"]


def test_the_main_nodes_exit_ends_the_job_and_stops_the_children(jobs, sandbox):
    name = _name("mnp-fail")
    # The main node fails once both children run; the children would wait for ever.
    children_run = f'[ "$(ls /shared/{name} 2>/dev/null | wc -l)" -ge 2 ]'
    main = f"until {children_run}; do sleep 0.1; done; exit 3"
    began = time.monotonic()
    job_id = _shell(jobs, name, 3, main, CHILD_WAITS, retryStrategy={"attempts": 1})
    job = jobs.wait(job_id, timeout=90)
    took = time.monotonic() - began

    assert job["status"] == "FAILED"
    assert job["statusReason"] == EXIT_REASON
    assert job["container"]["exitCode"] == 3
    assert took < 30, f"the job took {took:.0f} s to end"
    nodes = _nodes(jobs, job_id, 3)
    assert nodes[0]["container"]["exitCode"] == 3
    assert nodes[0]["statusReason"] == EXIT_REASON
    assert [node["status"] for node in nodes] == ["FAILED"] * 3
    assert sorted(path.name for path in (_shared(sandbox) / name).iterdir()) == ["1", "2"]
    assert _containers_of(sandbox, job_id) == []


def test_terminating_the_job_stops_every_node(jobs, sandbox):
    name = _name("mnp-stop")
    job_id = _shell(jobs, name, 2, CHILD_WAITS, CHILD_WAITS)
    started = [_shared(sandbox) / name / str(i) for i in range(2)]
    assert wait_until(lambda: all(path.exists() for path in started), 60), "nodes never ran"
    assert jobs.describe(job_id)["status"] == "RUNNING"
    assert len(_containers_of(sandbox, job_id)) == 2

    jobs.batch.terminate_job(jobId=job_id, reason="stopped by the test")
    job = jobs.wait(job_id, timeout=60)

    assert job["status"] == "FAILED"
    assert job["statusReason"] == "stopped by the test"
    assert job["container"]["exitCode"] == 143
    assert _containers_of(sandbox, job_id) == []


def test_a_failed_attempt_starts_every_node_again(jobs):
    name = _name("mnp-retry")
    main = '[ "$AWS_BATCH_JOB_ATTEMPT" = 2 ]'
    job_id = _shell(jobs, name, 2, main, "echo child", retryStrategy={"attempts": 2})
    job = jobs.wait(job_id, timeout=90)

    assert job["status"] == "SUCCEEDED"
    assert [a["container"].get("exitCode") for a in job["attempts"]] == [1, 0]
    assert job["attempts"][0]["statusReason"] == EXIT_REASON
    main_node = _nodes(jobs, job_id, 2)[0]
    streams = [attempt["container"]["logStreamName"] for attempt in main_node["attempts"]]
    assert len(set(streams)) == 2
    assert main_node["container"]["logStreamName"] == streams[1]


def test_the_attempt_duration_applies_to_the_whole_job(jobs, sandbox):
    name = _name("mnp-timeout")
    timeout = {"attemptDurationSeconds": 3}
    job_id = _shell(jobs, name, 2, CHILD_WAITS, CHILD_WAITS, timeout=timeout)
    job = jobs.wait(job_id, timeout=60)

    assert job["status"] == "FAILED"
    assert job["statusReason"] == "Job attempt duration exceeded timeout"
    assert job["stoppedAt"] - job["startedAt"] < 15_000
    assert sorted(path.name for path in (_shared(sandbox) / name).iterdir()) == ["0", "1"]
    assert _containers_of(sandbox, job_id) == []


def test_the_stack_has_the_multinode_queue_on_its_placement_group(sandbox):
    session = sandbox.session()
    batch, cfn = session.client("batch"), session.client("cloudformation")
    queue = sandbox.env["SNAKEMAKE_AWSBATCH_MULTINODE_QUEUE"]
    (described,) = batch.describe_job_queues(jobQueues=[queue])["jobQueues"]
    (order,) = described["computeEnvironmentOrder"]
    (environment,) = batch.describe_compute_environments(
        computeEnvironments=[order["computeEnvironment"]]
    )["computeEnvironments"]
    resources = environment["computeResources"]
    assert (resources["type"], len(resources["subnets"])) == ("EC2", 1)
    groups = [
        resource["PhysicalResourceId"]
        for stack in cfn.describe_stacks()["Stacks"]
        for resource in cfn.list_stack_resources(StackName=stack["StackName"])[
            "StackResourceSummaries"
        ]
        if resource["ResourceType"] == "AWS::EC2::PlacementGroup"
    ]
    assert groups == [resources["placementGroup"]]


def test_the_node_network_and_its_credentials_rule_are_removed_by_name(sandbox, tmp_path):
    state = StateDir.resolve(str(tmp_path / "sandbox"))
    state.create()
    podman.write_config(state, prereqs.require(prereqs.RUNTIME_TOOLS)["runc"])
    try:
        network = node_network.create(state, 4321, sandbox.image)
        assert network["name"] == node_network.name(state)
        assert ipaddress.ip_address(network["gateway"]) in ipaddress.ip_network(network["subnet"])
        (rule,) = node_network._rules(state)
        assert f"{network['gateway']}:4321" in rule
        # The bridge keeps its address (Linux's NET_ADDR_SET), whichever node joins.
        (shown,) = json.loads(podman.podman(state, "network", "inspect", network["name"]).stdout)
        bridge = node_network.SYS_NET / shown["network_interface"]
        assert (bridge / "addr_assign_type").read_text().strip() == "3"
    finally:
        removed = node_network.remove(state)
    assert removed[-1] == f"network {network['name']}"
    assert node_network._rules(state) == []
    assert node_network.remove(state) == []


def test_a_main_node_that_cannot_start_fails_the_job_to_start(jobs, sandbox):
    name = _name("mnp-no-image")
    image = f"localhost/no-such-image:{uuid.uuid4().hex[:8]}"
    definition = jobs.batch.register_job_definition(
        jobDefinitionName=name,
        type="multinode",
        nodeProperties={
            "numNodes": 2,
            "mainNode": 0,
            "nodeRangeProperties": [
                {"targetNodes": "0:", "container": {"image": image, "command": ["true"]}}
            ],
        },
    )["jobDefinitionArn"]
    job = jobs.wait(_submit(jobs, name, definition, {}), timeout=60)

    assert job["status"] == "FAILED"
    assert job["statusReason"] == "Task failed to start"
    assert job["attempts"][0]["container"]["reason"].startswith("CannotPullContainerError")
    main, child = _nodes(jobs, job["jobId"], 2)
    assert main["container"]["reason"].startswith("CannotPullContainerError")
    assert "logStreamName" not in main["container"]
    assert (main["status"], child["status"]) == ("FAILED", "FAILED")
    assert _containers_of(sandbox, job["jobId"]) == []
