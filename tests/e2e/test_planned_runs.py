"""Jobs run what the submitting side planned: checkpoints globbed inside jobs, another
working directory (`--directory`), and a job whose own plan differs.

Inside a Batch job, Snakemake builds its DAG again and runs input functions anew. An
aggregate that globs a checkpoint's directory found nothing there: in S3 storage mode it
ran with no inputs and wrote an empty result (exit 0); staged, the job ran the checkpoint
again itself. With `--directory`, every staged job ran in the submitting machine's path.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from snakemake_executor_plugin_awsbatch.sandbox import testing
from tests.e2e import runs

pytestmark = pytest.mark.e2e

# Snakemake's documentation example; a checkpoint with wildcards whose shards are
# processed by group jobs; nested checkpoints (each file of one split by another).
CHECKPOINTS = r"""
import os

rule all:
    input:
        "aggregated.txt",
        expand("merged/{sample}.txt", sample=["s1", "s2"]),
        "nested.txt",

checkpoint clustering:
    output: directory("clustering")
    shell: "mkdir -p {output} && for i in 1 2 3; do echo $i > {output}/$i.txt; done"

rule post:
    input: "clustering/{i}.txt"
    output: "post/{i}.txt"
    shell: "sed 's/^/post /' {input} > {output}"

def aggregate_input(wildcards):
    out = checkpoints.clustering.get(**wildcards).output[0]
    return expand("post/{i}.txt", i=glob_wildcards(os.path.join(out, "{i}.txt")).i)

rule aggregate:
    input: aggregate_input
    output: "aggregated.txt"
    shell: "cat {input} > {output}"

checkpoint split:
    output: directory("split/{sample}")
    shell: "mkdir -p {output}; for p in a b; do echo {wildcards.sample}-$p > {output}/$p.txt; done"

rule shard:
    input: "split/{sample}/{part}.txt"
    output: "shard/{sample}/{part}.txt"
    group: "per_shard"
    shell: "tr a-z A-Z < {input} > {output}"

rule shard_size:
    input: "shard/{sample}/{part}.txt"
    output: "shard/{sample}/{part}.n"
    group: "per_shard"
    shell: "wc -c < {input} > {output}"

def merge_input(wildcards):
    out = checkpoints.split.get(sample=wildcards.sample).output[0]
    parts = glob_wildcards(os.path.join(out, "{part}.txt")).part
    return expand(
        "shard/{sample}/{part}.{ext}", sample=wildcards.sample, part=sorted(parts), ext=["txt", "n"]
    )

rule merge:
    input: merge_input
    output: "merged/{sample}.txt"
    shell: "cat {input} > {output}"

checkpoint outer:
    output: directory("outer")
    shell: "mkdir -p {output} && echo x > {output}/x.txt && echo y > {output}/y.txt"

checkpoint inner:
    input: "outer/{o}.txt"
    output: directory("inner/{o}")
    shell: "mkdir -p {output} && for k in 1 2; do (cat {input}; echo $k) > {output}/$k.txt; done"

def nested_input(wildcards):
    files = []
    outer = checkpoints.outer.get().output[0]
    for o in sorted(glob_wildcards(os.path.join(outer, "{o}.txt")).o):
        inner = checkpoints.inner.get(o=o).output[0]
        ks = sorted(glob_wildcards(os.path.join(inner, "{k}.txt")).k)
        files += expand("inner/{o}/{k}.txt", o=o, k=ks)
    return files

rule nested:
    input: nested_input
    output: "nested.txt"
    shell: "cat {input} > {output}"
"""
RESULTS = ("aggregated.txt", "merged/s1.txt", "merged/s2.txt", "nested.txt")
# What a local run writes (checked against `snakemake -c2` in the test too).
EXPECTED = {
    "aggregated.txt": "post 1\npost 2\npost 3\n",
    "merged/s1.txt": "S1-A\n5\nS1-B\n5\n",
    "merged/s2.txt": "S2-A\n5\nS2-B\n5\n",
    "nested.txt": "x\n1\nx\n2\ny\n1\ny\n2\n",
}


def _local_run(workdir: Path, snakefile: str) -> Path:
    workdir.mkdir(parents=True)
    (workdir / "Snakefile").write_text(snakefile)
    subprocess.run(
        [sys.executable, "-m", "snakemake", "-c2", "--quiet"],
        cwd=workdir,
        check=True,
        capture_output=True,
    )
    return workdir


def test_the_local_run_gives_the_expected_results(tmp_path):
    local = _local_run(tmp_path / "local", CHECKPOINTS)
    assert {name: (local / name).read_text() for name in RESULTS} == EXPECTED


@pytest.mark.parametrize("storage", [False, True], ids=["staged", "storage"])
def test_aggregates_of_checkpoints_see_the_shards_the_submitting_side_saw(
    sandbox: testing.RunningSandbox, tmp_path: Path, storage: bool
) -> None:
    workflow = runs.Workflow.create(sandbox, tmp_path / "wf", CHECKPOINTS, storage=storage)
    result = workflow.run(jobs=6, timeout=600)
    assert result.returncode == 0, result.output[-6000:]
    assert {name: workflow.read_output(name) for name in RESULTS} == EXPECTED
    # No job ran a checkpoint again: each checkpoint ran once, as its own Batch job.
    rules = [runs.rule_of(j) for j in runs.Batch(sandbox).jobs_of_run(result.run_id)]
    assert sorted(r for r in rules if r in ("clustering", "split", "outer", "inner")) == [
        "clustering",
        "inner",
        "inner",
        "outer",
        "split",
        "split",
    ]
    assert "planned otherwise" not in result.output


SIMPLE = """
rule all:
    input: "out/gathered.txt"

rule scatter:
    output: "out/{n}.txt"
    log: "logs/{n}.log"
    shell: "echo {wildcards.n} > {output} && echo done > {log}"

rule gather:
    input: expand("out/{n}.txt", n=[1, 2]), "data/in.txt"
    output: "out/gathered.txt"
    shell: "cat {input} > {output}"
"""


@pytest.mark.parametrize("storage", [False, True], ids=["staged", "storage"])
def test_a_run_given_another_directory_equals_a_local_run(
    sandbox: testing.RunningSandbox, tmp_path: Path, storage: bool
) -> None:
    """`cd elsewhere && snakemake -s wf/Snakefile -d wf`: each job still runs in its own
    scratch directory (before, it ran in the submitting machine's path of wf)."""
    workflow = runs.Workflow.create(
        sandbox, tmp_path / "wf", SIMPLE, {"data/in.txt": "input\n"}, storage=storage
    )
    if storage:  # in storage mode, the workflow's inputs are looked up in S3
        s3 = sandbox.session().client("s3")
        s3.upload_file(str(workflow.workdir / "data/in.txt"), *workflow.s3_key("data/in.txt"))
    done = subprocess.run(
        workflow.command("-s", "wf/Snakefile", "-d", "wf"),
        cwd=tmp_path,
        env=workflow.environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert workflow.read_output("out/gathered.txt") == "1\n2\ninput\n"
    assert workflow.read_output("logs/1.log") == "done\n"
    assert "Creating specified working directory" not in output
    # Nothing of the submitting machine's path was made on the job's side.
    assert not any(sandbox.scratch_dir.glob("**/wf/out"))


MISMATCH = """
import os

rule all:
    input: "out.txt"

rule pick:
    # The job's Snakemake sees AWS_BATCH_JOB_ID, the submitting side does not.
    input: lambda wildcards: "b.txt" if "AWS_BATCH_JOB_ID" in os.environ else "a.txt"
    output: "out.txt"
    log: "pick.log"
    shell: "echo ran > {log} && cat {input} > {output}"
"""


def test_a_job_whose_own_plan_differs_fails_with_the_difference_and_runs_nothing(
    sandbox: testing.RunningSandbox, tmp_path: Path
) -> None:
    workflow = runs.Workflow.create(
        sandbox, tmp_path / "wf", MISMATCH, {"a.txt": "a\n", "b.txt": "b\n"}
    )
    result = workflow.run(jobs=1)
    assert result.returncode != 0
    line = (
        "the job's Snakemake planned otherwise than the submitting side: rule pick: "
        "input planned but not here: a.txt; input here but not planned: b.txt"
    )
    assert f"The job said: {line}" in result.output, result.output[-6000:]
    # The rule's command never started: it would have written its log, which the runner
    # uploads also after a failure, and the plugin brings back.
    assert not (workflow.workdir / "pick.log").exists()
    assert not (workflow.workdir / "out.txt").exists()
    assert not [key for key in workflow.s3_objects() if key.endswith(("pick.log", "out.txt"))]
    (job,) = runs.Batch(sandbox).jobs_of_run(result.run_id)
    assert job["container"]["exitCode"] == 6  # the runner's EXIT_PLAN
