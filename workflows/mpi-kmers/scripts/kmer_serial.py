"""The truth: the same count in one process."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from kmers import count, read_fasta, write_counts

sequence = read_fasta(snakemake.input[0])  # noqa: F821
write_counts(count(sequence, int(snakemake.params.k)), snakemake.output[0])  # noqa: F821
