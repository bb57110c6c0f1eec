"""Multi-node parallel rules on the sandbox: real MPI (Open MPI from Debian, mpi4py) across
3 node containers, each with its own hostname, address and scratch directory.

1. workflows/mpi-kmers: the MPI count runs on 3 distinct nodes, equals a single-process
   count, and equals a local `mpirun -np 3` run of the same program; nothing is left, on
   the main node's scratch disk nor on the workers' own. The ranks on the workers run
   `scripts/kmer_mpi.py` from their working directory, which exists on a worker only
   because the worker made its scratch directory under the main node's name and
   fetched the sources into it; and Open MPI's daemon starts on a worker only because
   the worker wrote the launcher mpirun names at the main node's path.
2. A worker node killed while the command runs: the job fails naming it, at once, and no
   container of the job remains.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from snakemake_executor_plugin_awsbatch.jobside.cache import CACHE_DIR
from snakemake_executor_plugin_awsbatch.sandbox import multinode, podman, testing
from tests.e2e import runs

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).parents[2] / "workflows" / "mpi-kmers"
SMALL = ("--config", "nodes=3", "length=30000")


def multinode_job(sandbox: testing.RunningSandbox, run_id: str) -> dict:
    """The run's one multi-node job (its other rules ran as single jobs)."""
    (job,) = [j for j in runs.Batch(sandbox).jobs_of_run(run_id) if j.get("nodeProperties")]
    return job


def containers_of(sandbox: testing.RunningSandbox, job_id: str) -> list[str]:
    return [name for name in sandbox.job_containers() if job_id in name]


def test_mpi_across_three_node_containers_matches_a_local_run(
    sandbox: testing.RunningSandbox, tmp_path: Path
) -> None:
    workdir = tmp_path / "mpi-kmers"
    shutil.copytree(EXAMPLE, workdir)
    workflow = runs.Workflow.at(sandbox, workdir)
    result = workflow.run(*SMALL, jobs=4, timeout=600)
    assert result.returncode == 0, result.output[-6000:]

    check = (workdir / "results" / "check.txt").read_text()
    assert check.startswith("identical counts of ")
    assert check.splitlines()[1] == "3 ranks on nodes 0 1 2"
    rows = [line.split("\t") for line in (workdir / "results/ranks.tsv").read_text().splitlines()]
    assert rows[0] == ["rank", "node", "host", "kmers"]
    assert len({row[2] for row in rows[1:]}) == 3, rows  # three hosts

    # The same program, `mpirun -np 3` in one container of the same image.
    local = podman.podman(
        sandbox.state,
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        f"{workdir}:/w",
        "-w",
        "/w",
        sandbox.image,
        "bash",
        "-c",
        "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
        "OMPI_MCA_btl_vader_single_copy_mechanism=none "
        "mpirun --oversubscribe -np 3 /usr/bin/python3 scripts/kmer_mpi.py data/genome.fa "
        "local.tsv local-ranks.tsv 8",
    )
    assert local.returncode == 0
    assert (workdir / "local.tsv").read_text() == (workdir / "results/kmers.mpi.tsv").read_text()
    assert {
        r.split("\t")[1] for r in (workdir / "local-ranks.tsv").read_text().split("\n")[1:-1]
    } == {"local"}

    job = multinode_job(sandbox, result.run_id)
    assert job["status"] == "SUCCEEDED"
    assert job["nodeProperties"]["numNodes"] == 3
    assert containers_of(sandbox, job["jobId"]) == []
    for index in (1, 2):
        disk = multinode.node_disk(sandbox.state.node_disks, job["jobId"], index)
        assert [path.name for path in disk.iterdir() if path.name != CACHE_DIR] == []


KILL_SNAKEFILE = """
rule hold:
    output: "held.txt"
    resources: awsbatch_nodes=3
    shell:
        'mpirun --hostfile "$AWSBATCH_HOSTFILE" -np 3 /usr/bin/python3 -c '
        '"from mpi4py import MPI; import time; MPI.COMM_WORLD.Barrier(); '
        'print(\\'ranks up\\', flush=True); time.sleep(600)"; touch {output}'
"""


def test_a_worker_killed_mid_run_fails_the_job_naming_it(
    sandbox: testing.RunningSandbox, tmp_path: Path
) -> None:
    workflow = runs.Workflow.create(sandbox, tmp_path / "kill", KILL_SNAKEFILE)
    background = workflow.start(jobs=1)
    try:
        run_id = background.run_id()
        job = runs.poll(lambda: _running_multinode_job(sandbox, run_id), 180, "the MNP job running")
        worker = runs.poll(
            lambda: _worker_container(sandbox, job["jobId"], 2), 120, "node 2's container"
        )
        # The ranks are up on every node (the main node's log shows the barrier passed).
        runs.poll(lambda: "ranks up" in _main_log(sandbox, job["jobId"]), 180, "the MPI ranks")
        killed = time.monotonic()
        podman.podman(sandbox.state, "kill", worker)
        code = background.process.wait(timeout=180)
        took = time.monotonic() - killed
    finally:
        background.stop()
    output = background.output()
    assert code != 0
    assert "node 2 (" in output and "left the job while the command ran" in output, output[-5000:]
    assert took < 90, took
    final = runs.Batch(sandbox).client.describe_jobs(jobs=[job["jobId"]])["jobs"][0]
    assert final["status"] == "FAILED"
    runs.poll(lambda: containers_of(sandbox, job["jobId"]) == [], 60, "no container left")
    assert not (tmp_path / "kill" / "held.txt").exists()


def _running_multinode_job(sandbox: testing.RunningSandbox, run_id: str) -> dict | None:
    jobs = runs.Batch(sandbox).jobs_of_run(run_id)
    return next((j for j in jobs if j["status"] == "RUNNING" and j.get("nodeProperties")), None)


def _worker_container(sandbox: testing.RunningSandbox, job_id: str, index: int) -> str | None:
    names = containers_of(sandbox, job_id)
    return next((n for n in names if n.endswith(f"-{index}")), None)


def _main_log(sandbox: testing.RunningSandbox, job_id: str) -> str:
    name = _worker_container(sandbox, job_id, 0)
    if name is None:
        return ""
    return podman.podman(sandbox.state, "logs", name, check=False).stdout
