"""Simulate the pipeline's input: a random reference, planted variants (the truth) and reads.

Runs as the `simulate_data` rule's `script:`. It uses only the Python standard library
because the job image has python, Snakemake and the alignment tools, and nothing else
(and no `from __future__` import: Snakemake puts its preamble above the script's code).

Every random choice comes from a `random.Random` seeded with a string built from the
configured seed (string seeds are hashed with SHA-512, so they do not depend on
PYTHONHASHSEED): the same config gives byte-identical files on any machine, which is
what lets the test suite compare a local run with an AWS Batch run.
"""

import gzip
import math
import random
from dataclasses import dataclass
from pathlib import Path

BASES = "ACGT"
COMPLEMENT = str.maketrans("ACGT", "TGCA")
GENOTYPES = ("0/0", "0/1", "1/1")


@dataclass(frozen=True)
class Variant:
    chrom: str
    pos: int  # 1-based, as in VCF; for indels the unchanged base before the event
    ref: str
    alt: str
    kind: str  # SNP, INS or DEL
    genotypes: tuple[str, ...]  # one of GENOTYPES per sample, in sample order


def random_reference(rng: random.Random, contigs: dict[str, int]) -> dict[str, str]:
    """Uniform random bases: no repeats worth mentioning, so every read maps uniquely."""
    return {name: "".join(rng.choices(BASES, k=length)) for name, length in contigs.items()}


def plant_variants(
    rng: random.Random, reference: dict[str, str], n_samples: int, sim: dict
) -> list[Variant]:
    """Variants at least `min_gap` bp apart and `margin` bp from the contig ends.

    The spacing keeps every call unambiguous: no two events share a read's worth of
    context, and left-aligning an indel (bcftools norm) can never move it onto another one.
    """
    variants = []
    for chrom, seq in reference.items():
        pos = sim["margin"]
        while True:
            pos += sim["min_gap"] + rng.randrange(sim["gap_jitter"] + 1)
            if pos + sim["max_indel"] >= len(seq) - sim["margin"]:
                break
            variants.append(_one_variant(rng, chrom, seq, pos, n_samples, sim))
    return variants


def _one_variant(
    rng: random.Random, chrom: str, seq: str, pos: int, n_samples: int, sim: dict
) -> Variant:
    anchor = seq[pos - 1]
    event = _indel(rng, seq, pos, sim) if rng.random() < sim["indel_fraction"] else None
    kind, ref, alt = event or ("SNP", anchor, rng.choice([b for b in BASES if b != anchor]))
    # Shared variants exercise joint calling; a site nobody carries would be no truth at all.
    genotypes = rng.choices(GENOTYPES, weights=sim["genotype_weights"], k=n_samples)
    if all(gt == "0/0" for gt in genotypes):
        genotypes[rng.randrange(n_samples)] = "0/1"
    return Variant(chrom, pos, ref, alt, kind, tuple(genotypes))


def _indel(rng: random.Random, seq: str, pos: int, sim: dict) -> tuple[str, str, str] | None:
    """An insertion or deletion right after base `pos` that cannot slide along the sequence.

    An indel inside a repeat (AAA -> AAAA) can be written at several positions, and reads
    that end inside the repeat look like the reference: the caller's hardest case, which may
    then get the genotype wrong. The data is meant to be easy, so plant only indels whose
    first and last changed bases differ from the neighbouring bases. None: plant a SNP.
    """
    anchor, after = seq[pos - 1], seq[pos]  # the bases left and right of the event
    for _ in range(20):
        size = rng.randint(1, sim["max_indel"])
        if rng.random() < 0.5:
            inserted = "".join(rng.choices(BASES, k=size))
            if inserted[0] != after and inserted[-1] != anchor:
                return "INS", anchor, anchor + inserted
        else:
            deleted, next_kept = seq[pos : pos + size], seq[pos + size]
            if deleted[0] != next_kept and deleted[-1] != anchor:
                return "DEL", anchor + deleted, anchor
    return None


def haplotypes(
    rng: random.Random, reference: dict[str, str], variants: list[Variant], sample_index: int
) -> list[dict[str, str]]:
    """The sample's two copies of the genome; a heterozygous variant goes on a random one."""
    carried: list[list[Variant]] = [[], []]
    for v in variants:
        gt = v.genotypes[sample_index]
        if gt == "1/1":
            carried[0].append(v)
            carried[1].append(v)
        elif gt == "0/1":
            carried[rng.randrange(2)].append(v)
    return [_apply(reference, vs) for vs in carried]


def _apply(reference: dict[str, str], variants: list[Variant]) -> dict[str, str]:
    genome = {}
    for chrom, seq in reference.items():
        parts, cursor = [], 0
        for v in (v for v in variants if v.chrom == chrom):  # already sorted by position
            parts += [seq[cursor : v.pos - 1], v.alt]
            cursor = v.pos - 1 + len(v.ref)
        genome[chrom] = "".join([*parts, seq[cursor:]])
    return genome


def simulate_pairs(rng: random.Random, genome: list[dict[str, str]], n_pairs: int, sim: dict):
    """Yield (read1, read2) sequences of fragments drawn uniformly from both haplotypes."""
    length = sim["read_length"]
    # Draw (haplotype, contig) in proportion to length so coverage is even along the genome.
    copies = [(hap, chrom) for hap in genome for chrom in hap]
    weights = [len(hap[chrom]) for hap, chrom in copies]
    for _ in range(n_pairs):
        hap, chrom = rng.choices(copies, weights=weights)[0]
        seq = hap[chrom]
        size = max(length, round(rng.gauss(sim["fragment_mean"], sim["fragment_sd"])))
        start = rng.randrange(len(seq) - size + 1)
        fragment = seq[start : start + size]
        if rng.random() < 0.5:  # the fragment may come from either strand
            fragment = reverse_complement(fragment)
        yield (
            _with_errors(rng, fragment[:length], sim["error_rate"]),
            _with_errors(rng, reverse_complement(fragment)[:length], sim["error_rate"]),
        )


def _with_errors(rng: random.Random, read: str, rate: float) -> str:
    """Substitution errors at `rate` per base, so the caller has some noise to reject."""
    bases = list(read)
    for i, base in enumerate(bases):
        if rng.random() < rate:
            bases[i] = rng.choice([b for b in BASES if b != base])
    return "".join(bases)


def reverse_complement(seq: str) -> str:
    return seq.translate(COMPLEMENT)[::-1]


def write_fasta(path: str, reference: dict[str, str], width: int = 60) -> None:
    with open(path, "w") as out:
        for name, seq in reference.items():
            out.write(f">{name}\n")
            out.writelines(seq[i : i + width] + "\n" for i in range(0, len(seq), width))


def write_truth_vcf(
    path: str, reference: dict[str, str], variants: list[Variant], samples: list[str], seed
) -> None:
    header = [
        "##fileformat=VCFv4.2",
        f"##source=simulate_data.py seed={seed}",
        *(f"##contig=<ID={name},length={len(seq)}>" for name, seq in reference.items()),
        '##INFO=<ID=TYPE,Number=1,Type=String,Description="Planted event: SNP, INS or DEL">',
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT"])
        + "\t"
        + "\t".join(samples),
    ]
    with open(path, "w") as out:
        out.writelines(line + "\n" for line in header)
        for v in variants:
            fields = [v.chrom, str(v.pos), ".", v.ref, v.alt, ".", "PASS", f"TYPE={v.kind}", "GT"]
            out.write("\t".join([*fields, *v.genotypes]) + "\n")


def write_fastq_pair(path1: str, path2: str, name: str, pairs, quality: str) -> int:
    # mtime=0 keeps the gzip header free of the current time, so files are reproducible.
    with (
        gzip.GzipFile(path1, "wb", compresslevel=1, mtime=0) as out1,
        gzip.GzipFile(path2, "wb", compresslevel=1, mtime=0) as out2,
    ):
        n = 0
        for n, (read1, read2) in enumerate(pairs, start=1):
            qual = quality * len(read1)
            out1.write(f"@{name}:{n}\n{read1}\n+\n{qual}\n".encode())
            out2.write(f"@{name}:{n}\n{read2}\n+\n{qual}\n".encode())
    return n


def simulate(out: dict, samples: dict[str, list[str]], sim: dict) -> list[str]:
    """Write reference, truth and one read pair per (sample, unit); return log lines.

    `out` holds the paths: reference, truth, and reads[(sample, unit)] = (R1, R2).
    """
    seed = sim["seed"]
    names = list(samples)
    reference = random_reference(random.Random(f"{seed}:reference"), sim["contigs"])
    variants = plant_variants(random.Random(f"{seed}:variants"), reference, len(names), sim)
    write_fasta(out["reference"], reference)
    write_truth_vcf(out["truth"], reference, variants, names, seed)
    log = [f"reference: {sum(map(len, reference.values()))} bp, {len(variants)} variants"]

    # Phred quality matching the simulated error rate (0.001 -> Q30): honest base qualities.
    phred = max(2, min(41, round(-10 * math.log10(sim["error_rate"]))))
    genome_length = sum(len(seq) for seq in reference.values())
    n_pairs = round(sim["coverage_per_unit"] * genome_length / (2 * sim["read_length"]))
    for index, sample in enumerate(names):
        # One generator per sample/unit: adding a sample leaves the others' reads unchanged.
        hap_rng = random.Random(f"{seed}:haplotypes:{sample}")
        genome = haplotypes(hap_rng, reference, variants, index)
        for unit in samples[sample]:
            rng = random.Random(f"{seed}:reads:{sample}:{unit}")
            pairs = simulate_pairs(rng, genome, n_pairs, sim)
            r1, r2 = out["reads"][(sample, unit)]
            n = write_fastq_pair(r1, r2, f"{sample}.{unit}", pairs, chr(33 + phred))
            log.append(f"{sample}.{unit}: {n} read pairs")
    return log


def main(snakemake) -> None:
    samples = snakemake.params.samples
    units = [(s, u) for s, us in samples.items() for u in us]
    out = {
        "reference": snakemake.output.reference,
        "truth": snakemake.output.truth,
        # The rule lists R1 and R2 files in the same (sample, unit) order as `units`.
        "reads": dict(
            zip(units, zip(snakemake.output.r1, snakemake.output.r2, strict=True), strict=True)
        ),
    }
    log = simulate(out, samples, snakemake.params.simulation)
    Path(snakemake.log[0]).write_text("\n".join(log) + "\n")


if "snakemake" in globals():
    main(globals()["snakemake"])
