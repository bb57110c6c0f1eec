"""A multi-node job's nodes on loopback: joining the hub, the hostfile, a lost worker, and
the launcher MPI uses in place of ssh (jobside/nodes.py, jobside/node_exec.py).

Real sockets and real processes; the sandbox test (tests/e2e/test_multinode.py) runs the
same code in separate containers with Open MPI.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from snakemake_executor_plugin_awsbatch.jobside import node_exec, nodes
from snakemake_executor_plugin_awsbatch.jobside.manifest import NodeGroup

SECRET = "s" * 64
SCRATCH_NAME = "job#0-a1-0123456789ab"


def group(join_seconds: int = 10) -> NodeGroup:
    return NodeGroup(count=3, slots=2, secret=SECRET, join_seconds=join_seconds)


def main_env() -> nodes.NodeEnv:
    return nodes.NodeEnv(index=0, count=3, main_index=0, main_address=None)


def worker_env(index: int) -> nodes.NodeEnv:
    return nodes.NodeEnv(index=index, count=3, main_index=0, main_address="127.0.0.1")


def join_in_thread(
    g: NodeGroup, index: int, port: int, joined: dict[int, object], problem: str | None = None
) -> None:
    """A worker: joins, learns the main node's scratch name, says it is ready (or not)."""

    def run() -> None:
        try:
            control, scratch_name = nodes.join(g, worker_env(index), port)
        except nodes.NodeError as e:  # a refused worker gives up at its deadline
            joined[index] = e
            return
        assert scratch_name == SCRATCH_NAME
        nodes.ready(control, problem)
        joined[index] = control

    threading.Thread(target=run, daemon=True).start()


def test_node_env_from_batch_variables() -> None:
    env = {
        "AWS_BATCH_JOB_NODE_INDEX": "2",
        "AWS_BATCH_JOB_NUM_NODES": "3",
        "AWS_BATCH_JOB_MAIN_NODE_INDEX": "0",
        "AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS": "10.0.0.5",
    }
    node = nodes.NodeEnv.from_environ(env)
    assert node == nodes.NodeEnv(2, 3, 0, "10.0.0.5") and not node.is_main
    assert nodes.NodeEnv.from_environ({}) is None
    with pytest.raises(nodes.NodeError, match="incomplete"):
        nodes.NodeEnv.from_environ({"AWS_BATCH_JOB_NODE_INDEX": "1"})


def test_workers_join_and_the_hostfile_lists_every_node() -> None:
    hub = nodes.Hub(group(), main_env(), SCRATCH_NAME, port=0)
    joined: dict[int, object] = {}
    try:
        for index in (2, 1):
            join_in_thread(group(), index, hub.port, joined)
        members = hub.gather()
        assert [m.index for m in members] == [1, 2]
        assert hub.address == "127.0.0.1"
        text = nodes.hostfile_text(hub.address, members, 2)
        assert text == "127.0.0.1 slots=2\n" * 3
        # The end: each worker learns it was a normal one.
        deadline = time.monotonic() + 5
        while len(joined) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        hub.close()
    assert all(nodes.serve_until_end(sock) for sock in joined.values())  # type: ignore[arg-type]


def test_a_worker_with_the_wrong_secret_is_refused_and_never_counted() -> None:
    hub = nodes.Hub(group(join_seconds=2), main_env(), SCRATCH_NAME, port=0)
    try:
        wrong = NodeGroup(count=3, slots=2, secret="x" * 64, join_seconds=2)
        joined: dict[int, object] = {}
        join_in_thread(wrong, 1, hub.port, joined)
        join_in_thread(group(), 2, hub.port, joined)
        with pytest.raises(nodes.NodeError) as error:
            hub.gather()
        deadline = time.monotonic() + 5
        while 1 not in joined and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        hub.close()
    assert isinstance(joined[1], nodes.NodeError)  # it was never let in
    message = str(error.value)
    assert message.startswith("node(s) 1 of 3 did not join the main node within 2 s")
    assert "joined: node 2 (127.0.0.1, host " in message


def test_a_worker_that_cannot_get_ready_fails_the_gathering_naming_it() -> None:
    hub = nodes.Hub(group(), main_env(), SCRATCH_NAME, port=0)
    joined: dict[int, object] = {}
    try:
        join_in_thread(group(), 1, hub.port, joined)
        join_in_thread(group(), 2, hub.port, joined, problem="no space left on device")
        started = time.monotonic()
        with pytest.raises(nodes.NodeError) as error:
            hub.gather()
    finally:
        hub.close()
    assert time.monotonic() - started < 5  # at once, not at the join deadline
    assert str(error.value).startswith("node 2 (127.0.0.1, host ")
    assert str(error.value).endswith("could not get ready: no space left on device")


def test_a_worker_that_leaves_while_the_command_runs_is_named_once() -> None:
    hub = nodes.Hub(group(), main_env(), SCRATCH_NAME, port=0)
    joined: dict[int, object] = {}
    lost: list[str] = []
    try:
        for index in (1, 2):
            join_in_thread(group(), index, hub.port, joined)
        hub.gather()
        hub.watch(lost.append)
        joined[2].close()  # type: ignore[attr-defined]
        deadline = time.monotonic() + 5
        while not lost and time.monotonic() < deadline:
            time.sleep(0.05)
        joined[1].close()  # type: ignore[attr-defined]
        time.sleep(0.3)
    finally:
        hub.close()
    assert len(lost) == 1
    assert lost[0].startswith("node 2 (127.0.0.1, host ")
    assert "left the job while the command ran" in lost[0]


def test_the_main_node_ending_is_told_apart_from_losing_it() -> None:
    hub = nodes.Hub(group(), main_env(), SCRATCH_NAME, port=0)
    joined: dict[int, object] = {}
    for index in (1, 2):
        join_in_thread(group(), index, hub.port, joined)
    hub.gather()
    for member in hub.members.values():
        member.sock.close()  # the main node died: no "end"
    assert not any(nodes.serve_until_end(sock) for sock in joined.values())  # type: ignore[arg-type]
    hub.close()


@pytest.fixture
def server(tmp_path: Path):
    srv = node_exec.ExecServer(SECRET, tmp_path, {**os.environ, "WHERE": "worker"}, port=0)
    srv.start()
    yield srv
    srv.close()


def test_the_launcher_runs_a_command_on_the_worker_and_relays_it(
    server: node_exec.ExecServer, tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    command = 'echo "out $WHERE $(pwd)"; echo err >&2; exit 7'
    code = node_exec.run_remote("127.0.0.1", command, SECRET, port=server.port)
    captured = capfdbinary.readouterr()
    assert code == 7
    assert captured.out == f"out worker {tmp_path}\n".encode()
    assert captured.err == b"err\n"


def test_the_launcher_with_a_wrong_secret_runs_nothing(
    server: node_exec.ExecServer, tmp_path: Path
) -> None:
    with pytest.raises(ConnectionError):
        node_exec.run_remote("127.0.0.1", f"touch {tmp_path}/ran", "y" * 64, port=server.port)
    assert not (tmp_path / "ran").exists()


def test_a_killed_launcher_ends_the_remote_command(
    server: node_exec.ExecServer, tmp_path: Path
) -> None:
    """mpirun kills its launchers at the end: the worker's daemons must not outlive them."""
    nodes_dir = tmp_path / "nodes"
    nodes.write_agent(nodes_dir, SECRET, sys.executable)
    marker = tmp_path / "pid"
    script = (
        "import sys; from snakemake_executor_plugin_awsbatch.jobside import node_exec; "
        f"sys.exit(node_exec.run_remote('127.0.0.1', sys.argv[1], {SECRET!r}, port={server.port}))"
    )
    agent = subprocess.Popen([sys.executable, "-c", script, f"echo $$ > {marker}; exec sleep 60"])
    deadline = time.monotonic() + 10
    while not marker.exists() or not marker.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pid = int(marker.read_text())
    agent.kill()
    agent.wait()
    deadline = time.monotonic() + 10
    while _alive(pid):
        assert time.monotonic() < deadline, "the remote command outlived its launcher"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:  # a zombie waiting to be reaped is dead
            return stat.read().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone between open and read
        return False


def test_ssh_style_arguments() -> None:
    assert node_exec.split_ssh_args(["-x", "10.0.0.2", "orted", "-mca", "x"]) == (
        "10.0.0.2",
        "orted -mca x",
    )
    assert node_exec.split_ssh_args(["-o", "A=b", "h", "cmd"]) == ("h", "cmd")
    with pytest.raises(ValueError):
        node_exec.split_ssh_args(["host"])


def test_the_agent_script_and_environment(tmp_path: Path) -> None:
    nodes.write_agent(tmp_path / "n", SECRET, sys.executable)
    agent = tmp_path / "n" / nodes.AGENT_NAME
    assert os.access(agent, os.X_OK)
    assert (tmp_path / "n" / "secret").stat().st_mode & 0o077 == 0
    env = nodes.command_environment(tmp_path / "n", tmp_path / "n" / "hostfile", 3)
    assert env["OMPI_MCA_plm_rsh_agent"] == str(agent)
    assert env["AWSBATCH_HOSTFILE"] == str(tmp_path / "n" / "hostfile")
    # The agent script itself starts and says what it lacks.
    result = subprocess.run([str(agent), "h", "true"], capture_output=True, text=True, env={})
    assert result.returncode == 255 and "AWSBATCH_NODES_DIR" in result.stderr
