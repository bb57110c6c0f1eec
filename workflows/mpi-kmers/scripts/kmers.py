"""What both counts share: reading the FASTA, counting one slice, writing the table."""

from collections import Counter


def read_fasta(path: str) -> str:
    with open(path) as fasta:
        return "".join(line.strip() for line in fasta if not line.startswith(">"))


def count(sequence: str, k: int) -> Counter:
    return Counter(sequence[i : i + k] for i in range(len(sequence) - k + 1))


def write_counts(counts: Counter, path: str) -> None:
    with open(path, "w") as out:
        for kmer in sorted(counts):
            out.write(f"{kmer}\t{counts[kmer]}\n")
