"""The runner's main sequence: manifest -> scratch -> inputs -> command -> uploads -> report.

Whatever happens after the scratch directory exists (failure, SIGTERM, SIGINT, a bug),
the directory is removed before the runner exits. Exit codes: the command's own when it
fails; 128+N after signal N; EXIT_SETUP, EXIT_INPUTS, EXIT_OUTPUTS for the runner's own
failures, each with one clear line on stderr and in the report's `error`.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import signal
import socket
import sys
import time
import traceback
from collections.abc import Mapping
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from ..transfer import (
    S3Client,
    S3Uri,
    TransferFailedError,
    make_s3_client,
    upload_files,
)
from ..transfer.client import RUNNER_AGENT
from . import directories, in_job, nodes
from .cache import open_cache
from .command import Command
from .fetch import fetch_inputs
from .log import Phases, log, process_age
from .manifest import Manifest, ManifestError, record_range
from .planned import PLAN_ENV, Plan
from .report import FAILED, SUCCEEDED, TERMINATED, Report
from .scratch import Scratch, sweep_orphans
from .signals import Interrupted, SignalGuard
from .stage import plan_outputs, written_files
from .worker import run_worker

EXIT_INTERNAL = 1
EXIT_SETUP = 2  # unreadable manifest, unusable scratch root
EXIT_INPUTS = 3  # an input missing or failing verification; the command did not run
EXIT_OUTPUTS = 4  # a missing output, a failed upload, or an unwritable report
EXIT_NODES = nodes.EXIT_NODES  # a multi-node job's node did not join, or left
EXIT_PLAN = 6  # the job's Snakemake would have run other files than planned; nothing ran

SCRATCH_ROOT_ENV = "AWSBATCH_SCRATCH_ROOT"
GRACE_ENV = "AWSBATCH_KILL_GRACE_SECONDS"
DEFAULT_SCRATCH_ROOT = "/scratch"
# Batch (ECS) sends SIGKILL 30 s after SIGTERM; leave time for cleanup after the grace.
DEFAULT_GRACE_SECONDS = 20.0


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.image:
        log(f"image {args.image}" + (f", job runtime {args.runtime}" if args.runtime else ""))
    # In a tool image, a Python `script:` runs with the image's own Python when it has
    # one (as Snakemake does in a container), else with the runtime's.
    script_python = image_python() if args.runtime else None
    command = Command(args.grace, script_python)
    guard = SignalGuard(command)
    guard.install()
    return Runner(args.manifest, Path(args.scratch_root), command, guard, args.record_bytes).run()


def image_python() -> str | None:
    """The image's python3 (or python) on its PATH; the runtime is never on PATH."""
    return shutil.which("python3") or shutil.which("python")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m snakemake_executor_plugin_awsbatch.jobside",
        description="Run one Snakemake job inside an AWS Batch container from its S3 manifest.",
    )
    parser.add_argument("manifest", help="s3://bucket/key of the job's manifest (JSON)")
    parser.add_argument(
        "--record-bytes",
        type=int,
        default=None,
        help="the manifest is an array job's pack of records this wide (jobside/manifest.py)",
    )
    parser.add_argument(
        "--scratch-root",
        default=os.environ.get(SCRATCH_ROOT_ENV) or DEFAULT_SCRATCH_ROOT,
        help=f"where job directories are made (default: ${SCRATCH_ROOT_ENV} or /scratch)",
    )
    parser.add_argument("--image", help="the job's image, for its log")
    parser.add_argument(
        "--runtime",
        help="the job runtime this runner runs from, in a tool image (set by its launcher)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=float(os.environ.get(GRACE_ENV) or DEFAULT_GRACE_SECONDS),
        help="seconds a signalled command may take to exit before it is killed",
    )
    return parser.parse_args(argv)


class Runner:
    def __init__(
        self,
        manifest_uri: str,
        root: Path,
        command: Command,
        guard: SignalGuard,
        record_bytes: int | None = None,  # an array child reads its record of a pack
    ):
        self.manifest_uri = manifest_uri
        self.root = root
        self.command = command
        self.guard = guard
        self.phases = Phases()
        self.record_bytes = record_bytes
        self.node: nodes.NodeEnv | None = None  # in a multi-node job: which node this is
        self.hub: nodes.Hub | None = None  # a multi-node job's main node gathers the others

    def run(self) -> int:
        started = time.time()
        age = process_age()
        if age is not None:
            self.phases.seconds["startup"] = round(age, 3)
            log(f"startup (interpreter and imports): {age:.3f} s")
        try:
            with self.phases.timed("manifest"):
                client = make_s3_client(agent=RUNNER_AGENT)
                manifest = _read_manifest(client, self.manifest_uri, self.record_bytes)
        except Interrupted as e:
            log(f"error: {e} while reading the manifest")
            return 128 + e.signum
        except (ManifestError, ValueError, ClientError, BotoCoreError) as e:
            index = os.environ.get("AWS_BATCH_JOB_ARRAY_INDEX")
            where = f" (array index {index})" if self.record_bytes else ""
            log(f"error: cannot read manifest {self.manifest_uri}{where}: {e}")
            return EXIT_SETUP
        log(f"job {manifest.jobname} of run {manifest.run_id}")
        if manifest.nodes:
            try:
                self.node = nodes.NodeEnv.from_environ(os.environ)
                if self.node is None:
                    raise nodes.NodeError("a multi-node job's manifest, but no node index")
            except nodes.NodeError as e:
                log(f"error: {e}")
                return EXIT_NODES
            if not self.node.is_main:
                return run_worker(
                    client, manifest, manifest.nodes, self.node, self.root, self.guard
                )
        report = Report(
            manifest.run_id,
            manifest.jobname,
            batch_job_id=os.environ.get("AWS_BATCH_JOB_ID"),
            attempt=os.environ.get("AWS_BATCH_JOB_ATTEMPT"),
            hostname=socket.gethostname(),
            started_at=started,
        )
        try:
            self._run_in_scratch(client, manifest, report)
        finally:
            if self.hub is not None:
                self.hub.close()  # the workers end now
        report.phases = self.phases.seconds
        report.finished_at = time.time()
        _write_report(client, manifest.report_uri, report)
        if report.error:
            log(f"error: {report.error}")
        log(f"{report.status}, exit code {report.exit_code}")
        assert report.exit_code is not None
        return report.exit_code

    def _run_in_scratch(self, client: S3Client, manifest: Manifest, report: Report) -> None:
        scratch = None
        try:
            with self.phases.timed("setup"):
                for orphan in sweep_orphans(self.root):
                    log(f"removed {orphan}, left behind by a runner that was killed")
                scratch = Scratch.create(self.root, report.batch_job_id, report.attempt)
                report.scratch_dir = str(scratch.path)
                log(f"scratch directory {scratch.path}")
                if manifest.nodes and self.node:
                    # The workers join while this node fetches its inputs.
                    self.hub = nodes.Hub(manifest.nodes, self.node, scratch.path.name)
            self._run_job(client, manifest, scratch, report)
        except Interrupted as e:
            _fail(report, TERMINATED, 128 + e.signum, f"runner {e}")
        except OSError as e:
            if scratch is None:
                _fail(report, FAILED, EXIT_SETUP, f"cannot create scratch in {self.root}: {e}")
            else:
                _fail(report, FAILED, EXIT_INTERNAL, f"internal error: {e!r}")
        except Exception as e:
            log(traceback.format_exc())
            _fail(report, FAILED, EXIT_INTERNAL, f"internal error: {e!r}")
        finally:
            self.guard.quiet = True
            if scratch is not None:
                with self.phases.timed("cleanup"):
                    self._remove(scratch, report)

    def _remove(self, scratch: Scratch, report: Report) -> None:
        try:
            scratch.remove()
        except OSError as e:
            # The report still goes out; the next runner's sweep removes what is left
            # once this process, and with it the lock, is gone.
            log(f"error: cannot remove {scratch.path}: {e}")
            if report.exit_code == 0:
                _fail(report, FAILED, EXIT_INTERNAL, f"cannot remove {scratch.path}: {e}")

    def _run_job(
        self, client: S3Client, manifest: Manifest, scratch: Scratch, report: Report
    ) -> None:
        with self.phases.timed("download"):
            try:
                # Large inputs come through the instance's cache, shared by its jobs.
                cache = open_cache(self.root, manifest.input_cache)
                fetched = fetch_inputs(client, manifest, scratch.workdir, cache)
            except TransferFailedError as e:
                _fail(report, FAILED, EXIT_INPUTS, f"inputs: {e}; the command was not run")
                return
        report.inputs = {"files": fetched.files, "bytes": fetched.bytes}
        report.input_cache = fetched.cache.to_dict()
        log(fetched.cache.summary())
        env = {
            **os.environ,
            **manifest.env,
            # Temporary files of the tools land in scratch, so they are removed with it.
            "TMPDIR": str(scratch.tmpdir),
            "AWSBATCH_SCRATCH_DIR": str(scratch.path),
            in_job.MARKER: "1",
            **user_name(os.environ),
        }
        if not self._prepare_directories(client, manifest, scratch, report):
            return
        if manifest.names:
            named = directories.write_names(scratch.workdir, manifest.names)
            log(f"named {named} files of {len(manifest.names)} upstream checkpoint directories")
        if self.hub is not None and not self._gather_nodes(manifest, scratch, env, report):
            return
        mismatch = scratch.path / "plan-mismatch.txt"
        if manifest.plan:
            plan = scratch.path / "plan.json"
            Plan.write(plan, scratch.workdir, manifest.plan, mismatch)
            env[PLAN_ENV] = str(plan)
        log("command: starting")
        with self.phases.timed("command"):
            code = self.command.run(manifest.command, scratch.workdir, env)
        report.command_exit_code = code
        if mismatch.exists():
            self._upload(client, manifest, scratch, report, code or EXIT_PLAN)
            _fail(report, FAILED, EXIT_PLAN, mismatch.read_text().strip())
            return
        if self.hub is not None and self.hub.lost:
            self._upload(client, manifest, scratch, report, code or EXIT_NODES)
            _fail(report, FAILED, EXIT_NODES, self.hub.lost)
            return
        if self.guard.signum is not None:
            name = signal.Signals(self.guard.signum).name
            reason = f"terminated by {name}; the command exited with {code}"
            _fail(report, TERMINATED, 128 + self.guard.signum, reason)
            return
        self._upload(client, manifest, scratch, report, code)

    def _gather_nodes(
        self, manifest: Manifest, scratch: Scratch, env: dict[str, str], report: Report
    ) -> bool:
        """Wait for every worker; then the hostfile and the MPI launcher, in `env`."""
        assert self.hub is not None and manifest.nodes is not None
        with self.phases.timed("nodes"):
            try:
                members = self.hub.gather()
            except nodes.NodeError as e:
                _fail(report, FAILED, EXIT_NODES, f"{e}; the command was not run")
                return False
        assert self.hub.address is not None
        directory = scratch.path / nodes.NODES_SUBDIR
        nodes.write_agent(directory, manifest.nodes.secret, sys.executable)
        hostfile = directory / "hostfile"
        hostfile.write_text(nodes.hostfile_text(self.hub.address, members, manifest.nodes.slots))
        given = {**os.environ, **manifest.env}
        for name, value in nodes.command_environment(directory, hostfile, len(members) + 1).items():
            if name not in given or name == nodes.HOSTFILE_ENV:
                env[name] = value
        log(
            f"{len(members) + 1} nodes: {self.hub.address} (main), "
            + ", ".join(f"{m.address} ({m.hostname})" for m in members)
        )
        # A worker lost while the command runs stops it (runner.run reports which).
        self.hub.watch(lambda _: self.command.forward(signal.SIGTERM))
        return True

    def _upload(
        self, client: S3Client, manifest: Manifest, scratch: Scratch, report: Report, code: int
    ) -> None:
        plan = plan_outputs(manifest, scratch.workdir, command_ok=code == 0)
        report.missing = plan.missing_outputs + plan.missing_other
        upload_error = None
        with self.phases.timed("upload"):
            try:
                results = upload_files(plan.items(scratch.workdir), client=client).results
            except TransferFailedError as e:
                upload_error, results = str(e), e.results
        report.written = written_files(plan.entries, results)
        if code != 0:
            _fail(report, FAILED, code, f"the command exited with {code}")
        elif plan.missing_outputs:
            missing = ", ".join(plan.missing_outputs)
            _fail(report, FAILED, EXIT_OUTPUTS, f"the command did not create: {missing}")
        elif upload_error:
            _fail(report, FAILED, EXIT_OUTPUTS, f"outputs: {upload_error}")
        elif self._mark_directories(client, manifest, scratch, report):
            report.status, report.exit_code = SUCCEEDED, 0

    def _prepare_directories(
        self, client: S3Client, manifest: Manifest, scratch: Scratch, report: Report
    ) -> bool:
        """S3-storage directories: inputs' empty subdirectories made, outputs' own objects
        deleted until the command has succeeded (jobside/directories.py)."""
        if not manifest.directories:
            return True
        try:
            made = directories.restore(client, manifest.directories, scratch.workdir)
            directories.forget(client, manifest.directories)
        except (ClientError, BotoCoreError) as e:
            _fail(report, FAILED, EXIT_INPUTS, f"storage directories: {e}; the command was not run")
            return False
        if made:
            log(f"made {made} empty subdirectories of storage directory inputs")
        return True

    def _mark_directories(
        self, client: S3Client, manifest: Manifest, scratch: Scratch, report: Report
    ) -> bool:
        try:
            for uri in directories.mark(client, manifest.directories, scratch.workdir):
                log(f"directory {uri} complete")
        except (ClientError, BotoCoreError) as e:
            _fail(report, FAILED, EXIT_OUTPUTS, f"storage directories: {e}")
            return False
        return True


def user_name(environ: Mapping[str, str]) -> dict[str, str]:
    """USER for a command whose image has no passwd entry for this uid (a static busybox).

    Snakemake (9.27) names the user in its log's header with getpass.getuser(), which
    reads LOGNAME, USER, LNAME or USERNAME, else the passwd entry, and fails without one.
    """
    if any(environ.get(name) for name in ("LOGNAME", "USER", "LNAME", "USERNAME")):
        return {}
    try:
        pwd.getpwuid(os.getuid())
    except KeyError:
        return {"USER": str(os.getuid())}
    return {}


def _fail(report: Report, status: str, exit_code: int, error: str) -> None:
    report.status, report.exit_code, report.error = status, exit_code, error


def _read_manifest(client: S3Client, uri: str, record_bytes: int | None) -> Manifest:
    s3 = S3Uri.parse(uri)
    if record_bytes is None:
        return Manifest.from_json(client.get_object(Bucket=s3.bucket, Key=s3.key)["Body"].read())
    span = record_range(record_bytes, dict(os.environ))
    body = client.get_object(Bucket=s3.bucket, Key=s3.key, Range=span)["Body"].read()
    return Manifest.from_json(body)


def _write_report(client: S3Client, uri: str, report: Report) -> None:
    """Write the report; a job whose report is lost cannot count as a success."""
    s3 = S3Uri.parse(uri)
    body = report.to_json().encode()
    try:
        client.put_object(Bucket=s3.bucket, Key=s3.key, Body=body, ContentType="application/json")
    except (ClientError, BotoCoreError) as e:
        log(f"error: cannot write the report to {uri}: {e}")
        if report.exit_code == 0:
            _fail(report, FAILED, EXIT_OUTPUTS, f"cannot write the report to {uri}: {e}")
