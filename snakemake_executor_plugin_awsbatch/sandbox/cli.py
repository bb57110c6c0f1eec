"""`snakemake-awsbatch-sandbox up|env|run|down|status|build-image` (also `python -m ...sandbox`).

Every error the user can fix is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from snakemake_executor_plugin_awsbatch import runtime
from snakemake_executor_plugin_awsbatch.sandbox import exports, image, lifecycle, podman, prereqs
from snakemake_executor_plugin_awsbatch.sandbox.errors import SandboxError
from snakemake_executor_plugin_awsbatch.sandbox.state import STATE_DIR_ENV, StateDir

PROG = "snakemake-awsbatch-sandbox"
EXIT_ERROR = 1
EXIT_NOT_RUNNING = 3  # `status` when nothing runs, as `systemctl status` does


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except SandboxError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except (BotoCoreError, ClientError) as err:
        print(f"{PROG}: error: AWS call to the sandbox failed: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        # One line instead of argparse's usage block followed by the error.
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--state-dir",
        help=f"the sandbox's state directory (default: ${STATE_DIR_ENV}, else ./.sandbox)",
    )
    starting = _Parser(add_help=False)
    starting.add_argument("--port", type=int, help="moto's port on 127.0.0.1 (default: a free one)")
    starting.add_argument(
        "--packages",
        help="space-separated Debian packages for the job image, replacing the default "
        "list (keep openmpi-bin and python3-mpi4py for multi-node jobs' MPI programs) "
        f"(default: ${image.PACKAGES_ENV}, else '{' '.join(image.DEFAULT_PACKAGES)}')",
    )
    starting.add_argument(
        "--stop-grace",
        type=int,
        default=lifecycle.DEFAULT_STOP_GRACE,
        metavar="SECONDS",
        help="seconds between SIGTERM and SIGKILL when a job is stopped (ECS: 30; default: "
        f"{lifecycle.DEFAULT_STOP_GRACE})",
    )

    parser = _Parser(prog=PROG, description="A local AWS Batch: moto + podman.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Any, help_text: str, *parents: Any) -> Any:
        sub = commands.add_parser(name, help=help_text, parents=[common, *parents])
        sub.set_defaults(handler=handler)
        return sub

    command("up", _up, "start the sandbox (reuses a running one)", starting)
    command("env", _env, "print export lines pointing boto3 and the plugin at the sandbox")
    run = command("run", _run, "run COMMAND with the sandbox's environment", starting)
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND...")
    command("down", _down, "stop everything the sandbox started")
    status = command("status", _status, "what runs, on which port, which image")
    status.add_argument("--json", action="store_true", help="print the state as JSON")
    command("build-image", _build_image, "build the sandbox's job image, print its tag", starting)
    return parser


def _packages(args: argparse.Namespace) -> list[str] | None:
    return args.packages.split() if args.packages is not None else None


def _up(args: argparse.Namespace) -> int:
    state = StateDir.resolve(args.state_dir)
    record, started = lifecycle.up(state, args.port, _packages(args), args.stop_grace)
    verb = "started" if started else "already running:"
    print(f"sandbox {verb} moto on {exports.endpoint(record)}, image {record['image']}")
    print(f'point your shell at it: eval "$({PROG} env --state-dir {state.root})"')
    _warn_if_stale(record)
    return 0


def _warn_if_stale(record: dict[str, object]) -> None:
    """A running sandbox keeps the job runtime it booted with; rules in tool images need
    the current code's."""
    if record.get("runtime_key") != runtime.key():
        print(
            f"warning: this sandbox's instance has the job runtime {record.get('runtime_key')}, "
            f"not {runtime.key()} of the current code: rules in their own images will be "
            f"refused; run `{PROG} down` and `{PROG} up` again",
            file=sys.stderr,
        )


def _env(args: argparse.Namespace) -> int:
    state = StateDir.resolve(args.state_dir)
    record = lifecycle.live_record(state)
    if record is None:
        raise SandboxError(f"no sandbox runs in {state.root}; start it with `{PROG} up`")
    print("\n".join(exports.shell_lines(exports.environment_variables(record))))
    return 0


def _run(args: argparse.Namespace) -> int:
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise SandboxError("run needs a command: run -- COMMAND [ARGS...]")
    state = StateDir.resolve(args.state_dir)
    record, started = lifecycle.up(state, args.port, _packages(args), args.stop_grace)
    _warn_if_stale(record)
    env = {**os.environ, **exports.environment_variables(record)}
    for name in exports.UNSET:
        env.pop(name, None)
    try:
        return _run_command(cmd, env)
    finally:
        if started:
            lifecycle.down(state)


def _run_command(cmd: list[str], env: dict[str, str]) -> int:
    try:
        child = subprocess.Popen(cmd, env=env)
    except OSError as err:
        raise SandboxError(f"cannot run {cmd[0]}: {err.strerror}") from None
    while True:
        try:
            code = child.wait()
            break
        except KeyboardInterrupt:
            # The child got the Ctrl-C too; let it finish cleaning up before `down`.
            continue
    return 128 - code if code < 0 else code


def _down(args: argparse.Namespace) -> int:
    state = StateDir.resolve(args.state_dir)
    stopped = lifecycle.down(state)
    print(f"stopped: {', '.join(stopped)}" if stopped else f"nothing runs in {state.root}")
    return 0


def _status(args: argparse.Namespace) -> int:
    state = StateDir.resolve(args.state_dir)
    current = lifecycle.status(state)
    if args.json:
        print(json.dumps(current or {"state_dir": str(state.root), "running": False}, indent=2))
    elif current is None:
        print(f"not running (state directory {state.root})")
    else:
        print("\n".join(_status_lines(current)))
    return 0 if current is not None else EXIT_NOT_RUNNING


def _status_lines(current: dict[str, Any]) -> list[str]:
    containers = current["job_containers"]
    return [
        f"running       state directory {current['state_dir']}",
        f"moto          {exports.endpoint(current)} (pid {current['moto_pid']})",
        f"podman API    unix://{current['state_dir']}/podman.sock (pid {current['podman_pid']})",
        f"job image     {current['image']}",
        f"stack         {current.get('stack', '-')} (--awsbatch-stack; cloudformation/)",
        f"queues        {', '.join(_queues(current['batch']))}",
        f"node network  {_node_network(current)}",
        f"S3 prefix     {current['s3_prefix']}",
        f"log group     {current.get('log_group', '-')}",
        f"scratch       {current['scratch_dir']}",
        f"containers    {len(containers)}{': ' + ', '.join(containers) if containers else ''}",
    ]


def _queues(batch: dict[str, Any]) -> list[str]:
    names = (batch.get(key) for key in ("default_queue", "priority_queue", "multinode_queue"))
    return [name for name in names if name]


def _node_network(current: dict[str, Any]) -> str:
    """The network of multi-node jobs' nodes, where moto serves them on the gateway."""
    network = current.get("node_network")
    if not network:
        return "-"
    endpoint = f"http://{network['gateway']}:{current['port']}"
    return f"{network['name']} {network['subnet']} (moto on {endpoint})"


def _build_image(args: argparse.Namespace) -> int:
    state = StateDir.resolve(args.state_dir)
    state.create()
    tools = prereqs.require(prereqs.RUNTIME_TOOLS)
    podman.write_config(state, tools["runc"])
    print(image.ensure_image(state, _packages(args)))
    return 0
