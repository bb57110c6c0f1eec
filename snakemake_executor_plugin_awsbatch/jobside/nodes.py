"""The nodes of a multi-node parallel job: the main node gathers the workers, they serve it.

AWS Batch starts the main node first, then the workers, and tells each only its index,
the number of nodes and (workers only) the main node's address. So:

- The main node's runner listens on HUB_PORT once its scratch directory exists. Each
  worker connects, proves it belongs to the job (an HMAC of the job's secret, from the
  manifest, over a fresh challenge) and stays connected; the address it came from is its
  address. The hub answers with the main node's scratch directory name: the worker makes
  its own under that name, so the ranks MPI starts there find the same working directory
  (with the workflow's sources, and the inputs if the rule asked), then says it is ready.
- Once every worker is ready (within the manifest's join_seconds), the main node
  writes the hostfile (Open MPI's format, main node first, `slots` from the rule's
  threads) and runs the rule's command with AWSBATCH_HOSTFILE and the launcher
  (node_exec.py) that MPI uses in place of ssh.
- A worker whose connection ends while the command runs (its container died, its
  instance went away: TCP keepalive notices within half a minute) stops the command, and
  the job fails naming that node. No node is left running: when the main node's command
  ends, it tells the workers, which clean up and exit; Batch ends the job with it.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from . import node_exec
from .manifest import NodeGroup

HUB_PORT = 50151
# The runner's exit code when a node did not join or left (runner.py has the others).
EXIT_NODES = 5
HOSTFILE_ENV = "AWSBATCH_HOSTFILE"
AGENT_NAME = "awsbatch-node-launcher"
# The agent's directory in a node's scratch directory. Every node writes it at the same
# path: mpirun passes the agent's path on to the daemons it starts, and Open MPI's orted
# ends at once when that path is missing on its node.
NODES_SUBDIR = "nodes"
HANDSHAKE_SECONDS = 10.0
RETRY_SECONDS = 1.0
# Keepalive on the control connections: a node that vanished without closing them (a
# lost instance) is noticed after IDLE + INTERVAL * COUNT seconds.
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 10, 5, 3


class NodeError(Exception):
    """A node did not join, or left: one line naming it."""


@dataclass(frozen=True)
class NodeEnv:
    """What Batch tells this node about the job's nodes."""

    index: int
    count: int
    main_index: int
    main_address: str | None  # workers only

    @property
    def is_main(self) -> bool:
        return self.index == self.main_index

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> NodeEnv | None:
        """None outside a multi-node job (no AWS_BATCH_JOB_NODE_INDEX)."""
        if "AWS_BATCH_JOB_NODE_INDEX" not in environ:
            return None
        try:
            return cls(
                index=int(environ["AWS_BATCH_JOB_NODE_INDEX"]),
                count=int(environ["AWS_BATCH_JOB_NUM_NODES"]),
                main_index=int(environ.get("AWS_BATCH_JOB_MAIN_NODE_INDEX", "0")),
                main_address=environ.get("AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS"),
            )
        except (KeyError, ValueError) as e:
            raise NodeError(f"Batch's multi-node variables are incomplete: {e!r}") from None


@dataclass
class Member:
    """A worker that joined the main node's hub."""

    index: int
    address: str
    hostname: str
    sock: socket.socket = field(repr=False)

    def describe(self) -> str:
        return f"node {self.index} ({self.address}, host {self.hostname})"


def keepalive(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    with contextlib.suppress(AttributeError, OSError):  # Linux names
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_COUNT)


# -- the main node ---------------------------------------------------------------------


class Hub:
    """The main node's side: workers join here, and are watched while the command runs."""

    def __init__(self, group: NodeGroup, env: NodeEnv, scratch_name: str, port: int = HUB_PORT):
        self.group = group
        self.env = env
        self.scratch_name = scratch_name
        self.opened = time.monotonic()
        self.address: str | None = None  # ours, as the workers reach us
        self.members: dict[int, Member] = {}
        self.failed: list[str] = []  # workers that joined but could not set up
        self.lost: str | None = None
        self._changed = threading.Condition()
        self._closing = False
        self._listener = socket.create_server(("", port))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, name="awsbatch-hub", daemon=True).start()

    @property
    def expected(self) -> set[int]:
        return set(range(self.env.count)) - {self.env.index}

    def gather(self) -> list[Member]:
        """Every worker, in index order, once all have joined; NodeError at the deadline."""
        deadline = self.opened + self.group.join_seconds
        with self._changed:
            while set(self.members) != self.expected:
                if self.failed:
                    raise NodeError(self.failed[0])
                left = deadline - time.monotonic()
                if left <= 0:
                    raise NodeError(self._not_joined())
                self._changed.wait(left)
        return [self.members[i] for i in sorted(self.members)]

    def _not_joined(self) -> str:
        missing = sorted(self.expected - set(self.members))
        joined = ", ".join(m.describe() for _, m in sorted(self.members.items())) or "none"
        names = ", ".join(str(i) for i in missing)
        return (
            f"node(s) {names} of {self.env.count} did not join the main node within "
            f"{self.group.join_seconds} s (joined: {joined}); see their logs, or raise "
            "--awsbatch-node-join-timeout if their images take that long to start"
        )

    def watch(self, on_lost: Callable[[str], object]) -> None:
        """From now on, a worker's connection ending calls on_lost(message) once."""
        for member in self.members.values():
            threading.Thread(target=self._watch_one, args=(member, on_lost), daemon=True).start()

    def _watch_one(self, member: Member, on_lost: Callable[[str], object]) -> None:
        with contextlib.suppress(OSError):
            while member.sock.recv(1024):
                pass
        with self._changed:
            if self._closing or self.lost is not None:
                return
            self.lost = (
                f"{member.describe()} left the job while the command ran (its container "
                "ended or its instance is unreachable); the command was stopped"
            )
        on_lost(self.lost)

    def close(self) -> None:
        """Tell every worker the job is over, and stop listening."""
        with self._changed:
            self._closing = True
            members = list(self.members.values())
        with contextlib.suppress(OSError):
            self._listener.close()
        for member in members:
            with contextlib.suppress(OSError):
                member.sock.sendall(b"end\n")
                member.sock.shutdown(socket.SHUT_RDWR)
            member.sock.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, peer = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._admit, args=(conn, peer[0]), daemon=True).start()

    def _admit(self, conn: socket.socket, peer: str) -> None:
        with conn.makefile("rb") as stream:
            try:
                member = self._handshake(conn, stream, peer)
            except (OSError, ValueError, KeyError, ConnectionError) as e:
                print(f"[awsbatch-runner] refused a node from {peer}: {e}", file=sys.stderr)
                conn.close()
                return
            problem = self._setup_problem(conn, stream)
        if problem:
            with self._changed:
                self.failed.append(f"{member.describe()} could not get ready: {problem}")
                self._changed.notify_all()
            conn.close()
            return
        conn.settimeout(None)
        keepalive(conn)
        with self._changed:
            if self._closing or member.index in self.members:
                conn.close()
                return
            self.address = self.address or conn.getsockname()[0]
            self.members[member.index] = member
            self._changed.notify_all()
        print(f"[awsbatch-runner] {member.describe()} joined", file=sys.stderr, flush=True)

    def _handshake(self, conn: socket.socket, stream: IO[bytes], peer: str) -> Member:
        conn.settimeout(HANDSHAKE_SECONDS)
        nonce = node_exec.challenge()
        node_exec.send_line(conn, {"challenge": nonce})
        hello = node_exec.read_line(stream, 4096)
        index = int(hello["node"])
        expected = node_exec.proof(self.group.secret, nonce, f"join {index}")
        if not hmac.compare_digest(str(hello.get("proof")), expected):
            raise ValueError("wrong proof of the job's secret")
        if index not in self.expected:
            raise ValueError(f"node index {index} is not a worker of this job")
        node_exec.send_line(conn, {"scratch": self.scratch_name})
        return Member(index, peer, str(hello.get("hostname", "?")), conn)

    def _setup_problem(self, conn: socket.socket, stream: IO[bytes]) -> str | None:
        """Wait for the worker's "ready" (it fetches the sources meanwhile); else why not."""
        left = self.opened + self.group.join_seconds - time.monotonic()
        try:
            conn.settimeout(max(1.0, left))
            answer = node_exec.read_line(stream, 65536)
        except (OSError, ValueError, ConnectionError) as e:
            return f"no answer ({e!r})"
        return None if answer.get("ready") else str(answer.get("error") or answer)


def hostfile_text(main_address: str, members: list[Member], slots: int) -> str:
    """Open MPI's hostfile (MPICH reads `host:slots` instead; the docs say how)."""
    addresses = [main_address, *(m.address for m in members)]
    return "".join(f"{address} slots={slots}\n" for address in addresses)


def command_environment(nodes_dir: Path, hostfile: Path, count: int) -> dict[str, str]:
    """Variables for the main node's command: the hostfile, and MPI launchers pointed at
    our agent instead of ssh. The job's own environment wins over every one of them."""
    agent = str(nodes_dir / AGENT_NAME)
    env = {
        HOSTFILE_ENV: str(hostfile),
        "AWSBATCH_NUM_NODES": str(count),
        node_exec.NODES_DIR_ENV: str(nodes_dir),
        # Open MPI 4 and 5 (PRRTE); its daemons start directly, not through each other.
        "OMPI_MCA_plm_rsh_agent": agent,
        "PRTE_MCA_plm_rsh_agent": agent,
        "OMPI_MCA_plm_rsh_no_tree_spawn": "1",
        "PRTE_MCA_plm_rsh_no_tree_spawn": "1",
        # Without tree spawn a daemon daemonizes: its launcher ends at once, a daemon that
        # then fails is never noticed (mpirun waits forever) and outlives the launcher.
        # Attached, its end is the launcher's exit code, and the launcher's end its own.
        "OMPI_MCA_orte_leave_session_attached": "1",
        "PRTE_MCA_prte_leave_session_attached": "1",
        # Containers may not ptrace each other: shared memory without CMA single copy.
        "OMPI_MCA_btl_vader_single_copy_mechanism": "none",
        # MPICH and Intel MPI (hydra).
        "HYDRA_LAUNCHER": "ssh",
        "HYDRA_LAUNCHER_EXEC": agent,
        "I_MPI_HYDRA_BOOTSTRAP": "ssh",
        "I_MPI_HYDRA_BOOTSTRAP_EXEC": agent,
    }
    if os.geteuid() == 0:  # Batch containers run as root unless the image says otherwise
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    return env


def write_agent(nodes_dir: Path, secret: str, python: str) -> None:
    """The launcher script and the secret it reads, both readable by the job only."""
    nodes_dir.mkdir(mode=0o700, exist_ok=True)
    secret_path = nodes_dir / node_exec.SECRET_FILE
    secret_path.write_text(secret)
    secret_path.chmod(0o600)
    agent = nodes_dir / AGENT_NAME
    agent.write_text(
        f"#!{python}\n"
        "import sys\n"
        "from snakemake_executor_plugin_awsbatch.jobside.node_exec import main\n"
        "sys.exit(main())\n"
    )
    agent.chmod(0o700)


# -- a worker node -----------------------------------------------------------------------


def join(group: NodeGroup, env: NodeEnv, port: int = HUB_PORT) -> tuple[socket.socket, str]:
    """Connect to the main node's hub and be admitted; retried until join_seconds.

    -> (the connection, the main node's scratch directory name)."""
    if not env.main_address:
        raise NodeError("Batch gave this worker no AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS")
    deadline = time.monotonic() + group.join_seconds
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return _join_once(group, env, port)
        except (OSError, ValueError, KeyError, ConnectionError) as e:
            last = e
            time.sleep(RETRY_SECONDS)
    raise NodeError(
        f"could not join the main node at {env.main_address}:{port} within "
        f"{group.join_seconds} s: {last!r}"
    )


def _join_once(group: NodeGroup, env: NodeEnv, port: int) -> tuple[socket.socket, str]:
    assert env.main_address
    conn = socket.create_connection((env.main_address, port), timeout=HANDSHAKE_SECONDS)
    try:
        with conn.makefile("rb") as stream:
            nonce = str(node_exec.read_line(stream, 4096)["challenge"])
            node_exec.send_line(
                conn,
                {
                    "node": env.index,
                    "hostname": socket.gethostname(),
                    "proof": node_exec.proof(group.secret, nonce, f"join {env.index}"),
                },
            )
            scratch_name = str(node_exec.read_line(stream, 4096)["scratch"])
    except BaseException:
        conn.close()
        raise
    conn.settimeout(None)
    keepalive(conn)
    return conn, scratch_name


def ready(control: socket.socket, error: str | None = None) -> None:
    """Tell the main node this worker is ready to serve, or why it cannot."""
    node_exec.send_line(control, {"ready": True} if error is None else {"error": error})


def serve_until_end(control: socket.socket) -> bool:
    """Block while the main node runs; True when it said the job is over, False when
    its connection broke (the main node died)."""
    received = b""
    with contextlib.suppress(OSError):
        while chunk := control.recv(1024):
            received += chunk
    control.close()
    return received.startswith(b"end")
