"""Count k-mers with MPI: kmer_mpi.py GENOME.fa COUNTS.tsv RANKS.tsv K

Rank 0 reads the genome and scatters one slice per rank (overlapping by k-1, so no k-mer
is lost or counted twice); each rank counts its slice; rank 0 gathers and adds the
counts, and writes which node and host each rank ran on (the Batch node index comes from
the environment Batch gives every node).
"""

import os
import socket
import sys
from collections import Counter
from pathlib import Path

from mpi4py import MPI

sys.path.insert(0, str(Path(__file__).parent))
from kmers import count, read_fasta, write_counts

genome, counts_path, ranks_path, k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()

slices = None
if rank == 0:
    sequence = read_fasta(genome)
    step = -(-len(sequence) // size)
    slices = [sequence[i * step : (i + 1) * step + k - 1] for i in range(size)]
mine = comm.scatter(slices, root=0)
counts = count(mine, k)
where = (rank, os.environ.get("AWS_BATCH_JOB_NODE_INDEX", "local"), socket.gethostname())
gathered = comm.gather((where, counts), root=0)

if rank == 0:
    total: Counter = Counter()
    for _, part in gathered:
        total.update(part)
    write_counts(total, counts_path)
    with open(ranks_path, "w") as out:
        out.write("rank\tnode\thost\tkmers\n")
        for (r, node, host), part in gathered:
            out.write(f"{r}\t{node}\t{host}\t{sum(part.values())}\n")
