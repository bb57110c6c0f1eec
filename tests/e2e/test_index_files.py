"""The Snakemake tutorial's shape, with undeclared index files, on the sandbox.

Its rules declare only the main files: bwa reads genome.fa.amb/.ann/.bwt/.pac/.sa next to
data/genome.fa, `bcftools mpileup -r` reads sorted_reads/<sample>.bam.bai next to each
BAM. Locally they are there; staged, they travel with their inputs (companions.py), and
the calls are those of a local run. With --awsbatch-no-index-files bwa fails, and the
failure names the files that were not staged and how to declare them.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from snakemake_executor_plugin_awsbatch.sandbox import testing
from tests.e2e import runs

pytestmark = pytest.mark.e2e

SNAKEFILE = """
SAMPLES = ["A", "B"]

rule all:
    input: "calls/all.vcf"

rule bwa_map:
    input: "data/genome.fa", "data/samples/{sample}.fastq"
    output: "mapped_reads/{sample}.bam"
    shell: "bwa mem -t 1 {input} | samtools view -b - > {output}"

rule samtools_sort:
    input: "mapped_reads/{sample}.bam"
    output: bam="sorted_reads/{sample}.bam", bai="sorted_reads/{sample}.bam.bai"
    shell: "samtools sort -o {output.bam} {input} && samtools index {output.bam}"

rule bcftools_call:
    input: fa="data/genome.fa", bam=expand("sorted_reads/{sample}.bam", sample=SAMPLES)
    output: "calls/all.vcf"
    shell: "bcftools mpileup -r chr1 -f {input.fa} {input.bam} | bcftools call -mv - > {output}"
"""
BWA_INDEX = (".amb", ".ann", ".bwt", ".pac", ".sa")
GENOME_BP = 20_000
READ_BP = 100
READS = 4_000  # 20x coverage


def make_data(workdir: Path) -> None:
    """A genome with bwa's index and a .fai beside it, and reads of two samples with SNPs."""
    rng = random.Random(14)
    genome = "".join(rng.choice("ACGT") for _ in range(GENOME_BP))
    data = workdir / "data"
    (data / "samples").mkdir(parents=True)
    (data / "genome.fa").write_text(
        ">chr1\n" + "".join(genome[i : i + 60] + "\n" for i in range(0, GENOME_BP, 60))
    )
    for tool in (["bwa", "index", "genome.fa"], ["samtools", "faidx", "genome.fa"]):
        subprocess.run(tool, cwd=data, check=True, capture_output=True)
    for sample in ("A", "B"):
        where = rng.sample(range(200, GENOME_BP - 200), 6)
        snps = {pos: "ACGT"[("ACGT".index(genome[pos]) + 1) % 4] for pos in where}
        seq = "".join(snps.get(i, base) for i, base in enumerate(genome))
        with (data / "samples" / f"{sample}.fastq").open("w") as fastq:
            for n in range(READS):
                start = rng.randrange(GENOME_BP - READ_BP)
                fastq.write(f"@{sample}{n}\n{seq[start : start + READ_BP]}\n+\n{'I' * READ_BP}\n")


def calls(vcf: Path) -> list[str]:
    """The records and the column header (## lines hold command lines and dates)."""
    return [line for line in vcf.read_text().splitlines() if not line.startswith("##")]


def tree(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and ".snakemake" not in p.parts and p.name != "snakemake.out"
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("index-files") / "source"
    source.mkdir()
    (source / "Snakefile").write_text(SNAKEFILE)
    make_data(source)
    return source


def test_undeclared_index_files_travel_and_the_calls_match_a_local_run(
    sandbox: testing.RunningSandbox, data: Path, tmp_path: Path
) -> None:
    local = shutil.copytree(data, tmp_path / "local")
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2"],
        cwd=local,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert len(calls(local / "calls" / "all.vcf")) > 6  # the SNPs were called

    remote = runs.Workflow.at(sandbox, shutil.copytree(data, tmp_path / "remote"))
    result = remote.run(timeout=400)
    assert result.returncode == 0, result.output[-6000:]
    assert calls(remote.workdir / "calls" / "all.vcf") == calls(local / "calls" / "all.vcf")
    # Nothing came back that the local run did not write (companions are inputs only).
    assert tree(remote.workdir) == tree(local)
    # The log says, once per input, what travelled undeclared and how to declare it.
    said = [line for line in result.output.splitlines() if "index files next to it" in line]
    genome = [line for line in said if "Staging data/genome.fa " in line]
    assert len(genome) == 1, said
    assert 'multiext("data/genome.fa", ".amb", ".ann", ".bwt", ".fai", ".pac", ".sa")' in genome[0]
    assert sum("Staging sorted_reads/A.bam " in line and "A.bam.bai" in line for line in said) == 1
    mirrored = remote.s3_objects()
    assert {f"data/genome.fa{suffix}" for suffix in BWA_INDEX} <= set(mirrored)


def test_switched_off_bwa_fails_and_the_message_says_what_to_declare(
    sandbox: testing.RunningSandbox, data: Path, tmp_path: Path
) -> None:
    remote = runs.Workflow.at(sandbox, shutil.copytree(data, tmp_path / "off"))
    result = remote.run("mapped_reads/A.bam", "--awsbatch-no-index-files", jobs=1, timeout=300)
    assert result.returncode != 0
    assert "fail to locate the index files" in result.output, result.output[-6000:]
    (hint,) = [line for line in result.output.splitlines() if line.strip().startswith("Not staged")]
    for suffix in BWA_INDEX:
        assert f"data/genome.fa{suffix}" in hint
    assert 'multiext("data/genome.fa", ".amb", ".ann", ".bwt", ".fai", ".pac", ".sa")' in hint
    assert "--awsbatch-no-index-files" in hint
    assert not (remote.workdir / "mapped_reads" / "A.bam").exists()


STORAGE_SNAKEFILE = """
rule bwa_map:
    input: "data/genome.fa", "data/samples/{sample}.fastq"
    output: "mapped_reads/{sample}.sam"
    shell: "bwa mem -t 1 {input} > {output}"
"""


def test_in_storage_mode_index_files_next_to_an_input_in_s3_travel(
    sandbox: testing.RunningSandbox, data: Path, tmp_path: Path
) -> None:
    """Storage mode: the data is in S3, the rule declares only genome.fa and the reads."""
    local = subprocess.run(
        ["bwa", "mem", "-t", "1", "data/genome.fa", "data/samples/A.fastq"],
        cwd=data,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    workdir = tmp_path / "storage"
    workdir.mkdir()
    (workdir / "Snakefile").write_text(STORAGE_SNAKEFILE)
    remote = runs.Workflow.at(sandbox, workdir, storage=True)
    s3 = sandbox.session().client("s3")
    for path in sorted((data / "data").rglob("*")):
        if path.is_file():
            s3.upload_file(str(path), *remote.s3_key(str(path.relative_to(data))))
    result = remote.run("mapped_reads/A.sam", jobs=1, timeout=300)
    assert result.returncode == 0, result.output[-6000:]
    said = [line for line in result.output.splitlines() if "index files next to it" in line]
    assert len(said) == 1 and "data/genome.fa with" in said[0], said
    assert all(f"genome.fa{suffix}" in said[0] for suffix in BWA_INDEX)

    def records(sam: str) -> list[str]:
        return [line for line in sam.splitlines() if not line.startswith("@PG")]

    assert records(remote.read_output("mapped_reads/A.sam")) == records(local)
    assert len(records(local)) > READS
