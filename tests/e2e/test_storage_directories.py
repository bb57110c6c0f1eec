"""S3 storage mode with checkpoints writing directory() outputs: what a local run gives.

Without the directory's own object (jobside/directories.py) the first checkpoint's
output is reported missing after its job ran (snakemake-storage-plugin-s3 remembers the
directory as absent), and the empty subdirectory never reaches the consumer.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from snakemake_executor_plugin_awsbatch.sandbox import testing
from tests.e2e import runs

pytestmark = pytest.mark.e2e

# The directory's own name has a space and a non-ASCII letter; inside it: '#', spaces,
# unicode, nesting, an empty subdirectory. The second checkpoint's directory is empty
# (Snakemake puts its .snakemake_timestamp there, locally as in S3).
SNAKEFILE = r"""
checkpoint scatter:
    output: directory("shards é")
    shell:
        '''
        mkdir -p "{output}/region #1/deeper" "{output}/empty sub" "{output}/only/empty"
        echo first > "{output}/region #1/a b.txt"
        echo second > "{output}/region #1/deeper/ü #2.txt"
        echo top > "{output}/top.txt"
        '''

checkpoint nothing:
    output: directory("nothing")
    shell: "mkdir -p '{output}'"

def scattered(wildcards):
    return checkpoints.scatter.get().output[0]

rule gather:
    input: scattered, "nothing"
    output: "tree.txt"
    shell:
        '''
        for d in {input:q}; do
            (cd "$d" && find . -printf '%y %p\n' | LC_ALL=C sort \
                && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
        done > {output:q}
        '''
"""


def local_tree(tmp_path: Path) -> str:
    workdir = tmp_path / "local"
    workdir.mkdir()
    (workdir / "Snakefile").write_text(SNAKEFILE)
    subprocess.run(
        [sys.executable, "-m", "snakemake", "tree.txt", "--cores", "1", "--quiet"],
        cwd=workdir,
        check=True,
        capture_output=True,
    )
    return (workdir / "tree.txt").read_text()


def test_checkpoint_directories_in_storage_mode_match_a_local_run(
    sandbox: testing.RunningSandbox, tmp_path: Path
) -> None:
    expected = local_tree(tmp_path)
    assert "d ./empty sub" in expected and "./region #1/deeper/ü #2.txt" in expected
    workflow = runs.Workflow.create(sandbox, tmp_path / "storage", SNAKEFILE, storage=True)
    result = workflow.run("tree.txt")
    assert result.returncode == 0, result.output[-5000:]
    assert workflow.read_output("tree.txt") == expected
    # The directory's files are where the storage plugin put them; its own object beside.
    objects = workflow.s3_objects()
    assert "shards é/region #1/deeper/ü #2.txt" in objects
    assert "shards é" in objects and "nothing" in objects
    # A rerun of everything (the objects exist now) gives the same again.
    again = workflow.run("tree.txt", "--forceall")
    assert again.returncode == 0, again.output[-5000:]
    assert workflow.read_output("tree.txt") == expected


# The genomics scatter: a checkpoint splits into shards that input functions find with
# glob_wildcards on the submitting machine, one Batch job per shard, a local rule (on the
# submitting machine) gathering the counts and the directory itself.
SCATTER = r"""
import os

localrules: gather

checkpoint split:
    output: directory("split")
    shell: "mkdir -p {output} && for i in 1 2 3; do seq $i > {output}/part_$i; done"

rule count:
    input: "split/part_{n}"
    output: "counted/{n}.txt"
    shell: "wc -l < {input} > {output}"

def counted(wildcards):
    shards = checkpoints.split.get().output[0]
    parts = glob_wildcards(os.path.join(shards, "part_{n}")).n
    return expand("counted/{n}.txt", n=sorted(parts))

rule gather:
    input: counts=counted, shards="split"
    output: "gathered.txt"
    shell:
        "cat {input.counts} > {output} && ls {input.shards} >> {output}"
        " && cat {input.shards}/part_3 >> {output}"
"""
GATHERED = "1\n2\n3\npart_1\npart_2\npart_3\n1\n2\n3\n"


def test_a_checkpoint_scatter_globbed_here_runs_every_shard(
    sandbox: testing.RunningSandbox, tmp_path: Path
) -> None:
    workflow = runs.Workflow.create(sandbox, tmp_path / "scatter", SCATTER, storage=True)
    result = workflow.run("gathered.txt")
    assert result.returncode == 0, result.output[-5000:]
    assert workflow.read_output("gathered.txt") == GATHERED
    assert result.output.count("rule count:") == 3, result.output[-5000:]

    # A fresh machine (no local names), the checkpoint complete in S3, the gather to
    # redo: Snakemake globs an empty directory before the plugin can act; the plugin
    # refuses the run (nothing submitted), writes the names, and the next run is right.
    storage = tmp_path / "scatter" / ".snakemake" / "storage"
    shutil.rmtree(storage)
    s3 = sandbox.session().client("s3")
    s3.delete_object(Bucket=workflow.s3_key("")[0], Key=workflow.s3_key("gathered.txt")[1])
    refused = workflow.run("gathered.txt")
    assert refused.returncode == 1, refused.output[-5000:]
    errors = [line for line in refused.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "run the same command again" in errors[0], refused.output
    assert "Submitted" not in refused.output
    again = workflow.run("gathered.txt")
    assert again.returncode == 0, again.output[-5000:]
    assert workflow.read_output("gathered.txt") == GATHERED
