"""A worker node of a multi-node parallel job: join, scratch, sources, serve, clean up.

A worker runs no rule command of its own. It joins the main node (jobside/nodes.py),
makes its scratch directory under the main node's directory name (on its own instance),
with the MPI launcher at the same path as the main node's, fetches the workflow's
sources into it (every input too when the rule asked, `awsbatch_node_inputs="all"`), and
serves the main node's MPI launcher (node_exec.py) there until the main node says the
job is over; then it removes the directory. Its exit code: 0 after a normal end,
EXIT_NODES when it could not join, get ready, or lost the main node, 128+N after signal
N. Batch judges the job by the main node alone.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

from ..transfer import S3Client, TransferFailedError
from . import nodes
from .cache import open_cache
from .fetch import fetch_inputs
from .log import log
from .manifest import Manifest, NodeGroup
from .node_exec import ExecServer
from .scratch import Scratch, sweep_orphans
from .signals import Interrupted, SignalGuard


class _Setup:
    """What the worker set up, for the cleanup."""

    scratch: Scratch | None = None
    server: ExecServer | None = None


def run_worker(
    client: S3Client,
    manifest: Manifest,
    group: NodeGroup,
    env: nodes.NodeEnv,
    root: Path,
    guard: SignalGuard,
) -> int:
    log(f"node {env.index} of {env.count}, a worker of the main node at {env.main_address}")
    setup = _Setup()
    try:
        control, scratch_name = nodes.join(group, env)
        log("joined the main node")
        try:
            _prepare(client, manifest, group, root, scratch_name, setup)
        except (OSError, TransferFailedError) as e:
            nodes.ready(control, f"{e}")
            raise
        nodes.ready(control)
        log("ready; serving the main node's MPI launcher until it ends the job")
        if nodes.serve_until_end(control):
            log("the main node ended the job")
            return 0
        log("error: lost the main node before it ended the job")
        return nodes.EXIT_NODES
    except (nodes.NodeError, OSError, TransferFailedError) as e:
        log(f"error: {e}")
        return nodes.EXIT_NODES
    except Interrupted as e:
        log(f"{e}")
        return 128 + e.signum
    finally:
        guard.quiet = True
        if setup.server is not None:
            setup.server.close()
        if setup.scratch is not None:
            setup.scratch.remove()


def _prepare(
    client: S3Client,
    manifest: Manifest,
    group: NodeGroup,
    root: Path,
    scratch_name: str,
    setup: _Setup,
) -> None:
    for orphan in sweep_orphans(root):
        log(f"removed {orphan}, left behind by a runner that was killed")
    job_id, attempt = os.environ.get("AWS_BATCH_JOB_ID"), os.environ.get("AWS_BATCH_JOB_ATTEMPT")
    try:
        setup.scratch = Scratch.create(root, job_id, attempt, name=scratch_name)
    except FileExistsError:
        # The main node shares this scratch volume (same instance): a name of its own,
        # and the ranks here start in the main node's directory, its agent there too.
        setup.scratch = Scratch.create(root, job_id, attempt)
    else:
        # At the main node's path: mpirun gives it to the daemons it starts here.
        nodes.write_agent(setup.scratch.path / nodes.NODES_SUBDIR, group.secret, sys.executable)
    scratch = setup.scratch
    log(f"scratch directory {scratch.path}")
    inputs = manifest.inputs if group.all_inputs else manifest.inputs[: group.sources]
    wanted = dataclasses.replace(manifest, inputs=inputs)
    fetched = fetch_inputs(client, wanted, scratch.workdir, open_cache(root, manifest.input_cache))
    log(f"fetched {fetched.files} files ({fetched.bytes} bytes) for the ranks on this node")
    launched_env = {
        **os.environ,
        **manifest.env,
        "TMPDIR": str(scratch.tmpdir),
        "AWSBATCH_SCRATCH_DIR": str(scratch.path),
    }
    setup.server = ExecServer(group.secret, scratch.workdir, launched_env)
    setup.server.start()
