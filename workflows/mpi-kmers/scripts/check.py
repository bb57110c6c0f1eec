"""The MPI count must equal the single-process one; say how many nodes the ranks used."""

from pathlib import Path

mpi = Path(snakemake.input.mpi).read_text()  # noqa: F821 (Snakemake's script globals)
serial = Path(snakemake.input.serial).read_text()  # noqa: F821
if mpi != serial:
    raise SystemExit("the MPI k-mer counts differ from the single-process counts")
ranks = Path(snakemake.input.ranks).read_text().splitlines()[1:]  # noqa: F821
nodes = sorted({line.split("\t")[1] for line in ranks})
with open(snakemake.output[0], "w") as out:  # noqa: F821
    out.write(f"identical counts of {len(mpi.splitlines())} distinct k-mers\n")
    out.write(f"{len(ranks)} ranks on nodes {' '.join(nodes)}\n")
