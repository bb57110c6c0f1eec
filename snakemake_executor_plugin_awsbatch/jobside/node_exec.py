"""The launcher MPI uses in place of ssh between the nodes of a multi-node job.

`mpirun` (Open MPI's rsh launcher, MPICH's hydra) starts its daemon on another node by
running `<agent> <host> <command>`, as it would run `ssh <host> <command>`. Our agent
(`python -m snakemake_executor_plugin_awsbatch.jobside.node_exec HOST COMMAND...`,
written as an executable script by nodes.py) connects to the worker runner's exec
server on EXEC_PORT, proves it belongs to the job (an HMAC over a fresh challenge with
the job's secret), and relays the command's stdout, stderr and exit code. When the agent
ends (mpirun kills it at the end), the worker kills the command's process group.

So no sshd, no keys and no user accounts are needed in the image: any image with the MPI
library runs multi-node. The command runs as `/bin/sh -c COMMAND`, as sshd would.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

# The worker's exec server; the main node's hub is nodes.HUB_PORT. Both are reached
# only inside the job's security group (the stack allows all traffic within it).
EXEC_PORT = 50152
# The file (0600) with the job's secret, beside the agent script; its directory in the
# command's environment.
NODES_DIR_ENV = "AWSBATCH_NODES_DIR"
SECRET_FILE = "secret"
CONNECT_SECONDS = 30.0
KILL_GRACE_SECONDS = 5.0

# Frames from the exec server: kind (1 byte), length (4 bytes, big-endian), payload.
STDOUT, STDERR, EXIT = b"o", b"e", b"x"
_HEADER = struct.Struct(">cI")


def proof(secret: str, challenge: str, purpose: str) -> str:
    """What a peer that knows the job's secret answers to `challenge`."""
    message = f"{purpose}\0{challenge}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def challenge() -> str:
    return secrets.token_hex(16)


def send_line(sock: socket.socket, data: dict[str, Any]) -> None:
    sock.sendall(json.dumps(data).encode() + b"\n")


def read_line(stream: IO[bytes], limit: int = 1 << 20) -> dict[str, Any]:
    """One JSON object from a line; ConnectionError when the peer closed first."""
    line = stream.readline(limit)
    if not line.endswith(b"\n"):
        raise ConnectionError("the peer closed the connection")
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def send_frame(sock: socket.socket, kind: bytes, payload: bytes) -> None:
    sock.sendall(_HEADER.pack(kind, len(payload)) + payload)


def read_frame(stream: IO[bytes]) -> tuple[bytes, bytes]:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise ConnectionError("the exec server closed the connection")
    kind, length = _HEADER.unpack(header)
    payload = stream.read(length)
    if len(payload) < length:
        raise ConnectionError("the exec server closed the connection")
    return kind, payload


class ExecServer:
    """A worker node's exec server: runs what the main node's MPI launcher asks for."""

    def __init__(self, secret: str, cwd: Path, env: dict[str, str], port: int = EXEC_PORT):
        self.secret = secret
        self.cwd = cwd
        self.env = env
        self._groups: set[int] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._listener = socket.create_server(("", port))
        self.port = self._listener.getsockname()[1]

    def start(self) -> None:
        threading.Thread(target=self._accept, name="awsbatch-exec", daemon=True).start()

    def close(self) -> None:
        """Stop accepting, and kill every command still running (their groups)."""
        with self._lock:
            self._closed = True
            groups = list(self._groups)
        with contextlib.suppress(OSError):
            self._listener.close()
        for group in groups:
            _kill_group(group, signal.SIGKILL)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as stream:
            try:
                command = self._authenticated_command(conn, stream)
            except (OSError, ValueError, ConnectionError) as e:
                print(f"[awsbatch-runner] refused an exec request: {e}", file=sys.stderr)
                return
            self._run(conn, stream, command)

    def _authenticated_command(self, conn: socket.socket, stream: IO[bytes]) -> str:
        conn.settimeout(CONNECT_SECONDS)
        nonce = challenge()
        send_line(conn, {"challenge": nonce})
        request = read_line(stream)
        if not hmac.compare_digest(str(request.get("proof")), proof(self.secret, nonce, "exec")):
            raise ValueError("wrong proof of the job's secret")
        conn.settimeout(None)
        return str(request["command"])

    def _run(self, conn: socket.socket, stream: IO[bytes], command: str) -> None:
        with self._lock:
            if self._closed:
                return
            proc = subprocess.Popen(
                ["/bin/sh", "-c", command],
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            self._groups.add(proc.pid)
        send_lock = threading.Lock()
        pumps = [
            _pump(proc.stdout, lambda data: _locked_frame(conn, send_lock, STDOUT, data)),
            _pump(proc.stderr, lambda data: _locked_frame(conn, send_lock, STDERR, data)),
        ]
        # The agent's end (mpirun is done with this node) ends the command.
        threading.Thread(target=_kill_when_closed, args=(stream, proc.pid), daemon=True).start()
        code = proc.wait()
        for pump in pumps:
            pump.join()
        _kill_group(proc.pid, signal.SIGKILL)  # what the command left in the background
        with self._lock:
            self._groups.discard(proc.pid)
        with contextlib.suppress(OSError):
            _locked_frame(conn, send_lock, EXIT, str(128 - code if code < 0 else code).encode())


def _pump(pipe: IO[bytes] | None, send: Callable[[bytes], None]) -> threading.Thread:
    def run() -> None:
        assert pipe is not None
        with pipe:
            for data in iter(lambda: pipe.read1(65536), b""):  # type: ignore[attr-defined]
                try:
                    send(data)
                except OSError:
                    return  # the agent is gone; the process is being killed

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _locked_frame(conn: socket.socket, lock: threading.Lock, kind: bytes, data: bytes) -> None:
    with lock:
        send_frame(conn, kind, data)


def _kill_when_closed(stream: IO[bytes], group: int) -> None:
    with contextlib.suppress(OSError, ValueError):
        while stream.read(4096):
            pass
    _kill_group(group, signal.SIGTERM)
    timer = threading.Timer(KILL_GRACE_SECONDS, _kill_group, (group, signal.SIGKILL))
    timer.daemon = True
    timer.start()


def _kill_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


# -- the agent: what mpirun runs in place of ssh -------------------------------------

# ssh options that take a value; launchers may pass some (hydra passes -x).
_SSH_OPTIONS_WITH_VALUE = frozenset("bcDEeFIiJLlmOoPpQRSWw")


def split_ssh_args(argv: list[str]) -> tuple[str, str]:
    """(host, command) from ssh-style arguments: options skipped, the rest joined."""
    rest = list(argv)
    while rest and rest[0].startswith("-") and len(rest[0]) > 1:
        option = rest.pop(0)
        if len(option) == 2 and option[1] in _SSH_OPTIONS_WITH_VALUE and rest:
            rest.pop(0)
    if len(rest) < 2:
        raise ValueError("usage: node_exec [ssh options] HOST COMMAND...")
    return rest[0], " ".join(rest[1:])


def run_remote(host: str, command: str, secret: str, port: int = EXEC_PORT) -> int:
    """Run `command` on the worker at `host`, relaying its output; its exit code."""
    conn = socket.create_connection((host, port), timeout=CONNECT_SECONDS)
    with conn, conn.makefile("rb") as stream:
        nonce = str(read_line(stream)["challenge"])
        send_line(conn, {"proof": proof(secret, nonce, "exec"), "command": command})
        conn.settimeout(None)
        outputs = {STDOUT: sys.stdout.buffer, STDERR: sys.stderr.buffer}
        while True:
            kind, payload = read_frame(stream)
            if kind == EXIT:
                return int(payload)
            outputs[kind].write(payload)
            outputs[kind].flush()


def main(argv: list[str] | None = None) -> int:
    try:
        host, command = split_ssh_args(sys.argv[1:] if argv is None else argv)
        secret = (Path(os.environ[NODES_DIR_ENV]) / SECRET_FILE).read_text().strip()
        return run_remote(host, command, secret)
    except (KeyError, OSError, ValueError, ConnectionError) as e:
        print(f"awsbatch node launcher: {e!r}", file=sys.stderr)
        return 255  # what ssh exits with when it cannot connect


if __name__ == "__main__":
    sys.exit(main())
