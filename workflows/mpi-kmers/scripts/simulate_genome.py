"""A random genome (seeded, so every run makes the same one), as one FASTA record."""

import random

length = int(snakemake.params.length)  # noqa: F821 (Snakemake's script globals)
rng = random.Random(int(snakemake.params.seed))  # noqa: F821
sequence = "".join(rng.choice("ACGT") for _ in range(length))
with open(snakemake.output[0], "w") as out:  # noqa: F821
    out.write(">chrSim\n")
    for start in range(0, length, 60):
        out.write(sequence[start : start + 60] + "\n")
