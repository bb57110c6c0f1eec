"""The workflows peers.py runs: a scatter plus gather of N jobs, and a burst of N
independent jobs; identical for every plugin, generated into a temporary directory."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

INPUT = "data/input.txt"
RESULT = "result.txt"

# `sha256sum <` prints "-" instead of the path: in storage mode the path is the storage
# plugin's local copy, which differs between plugins, so the hash alone goes in.
SCATTER_GATHER = """\
N = {n}

localrules: all

rule all:
    input: "{result}"

rule scatter:
    input: "{input}"
    output: "scattered/{{i}}.txt"
    shell: "(sha256sum < {{input}} | cut -c1-64; echo {{wildcards.i}}) > {{output}}"

rule gather:
    input: expand("scattered/{{i}}.txt", i=range(N))
    output: "{result}"
    shell: "cat {{input}} > {{output}}"
"""

# Independent jobs only, for the submission burst: no job waits for another.
BURST = """\
localrules: all

rule all:
    input: expand("burst/{{i}}.txt", i=range({n}))

rule one:
    output: "burst/{{i}}.txt"
    shell: "echo {{wildcards.i}} > {{output}}"
"""


def write_scatter_gather(dest: Path, n: int) -> Path:
    """The scatter/gather workflow with N scatter jobs in dest (a new directory)."""
    dest.mkdir(parents=True)
    (dest / "Snakefile").write_text(SCATTER_GATHER.format(n=n, input=INPUT, result=RESULT))
    (dest / INPUT).parent.mkdir()
    # Some kilobytes that every scatter job reads.
    (dest / INPUT).write_text("".join(f"line {i} of the shared input\n" for i in range(200)))
    return dest


def write_burst(dest: Path, n: int) -> Path:
    dest.mkdir(parents=True)
    (dest / "Snakefile").write_text(BURST.format(n=n))
    return dest


def fresh_copy(workflow: Path, dest: Path) -> Path:
    """A clean working directory per run, so no run sees another's outputs or metadata."""
    shutil.copytree(workflow, dest)
    return dest


def local_result(workflow: Path, scratch: Path) -> str:
    """result.txt of a local run (no executor) of the workflow: what every plugin must give."""
    work = fresh_copy(workflow, scratch)
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", "--quiet", "all"],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"local run failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return (work / RESULT).read_text()


def content_digest(workflow: Path) -> str:
    """A short digest of every file of the workflow (tags the image that bakes it in)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in workflow.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(workflow)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]
