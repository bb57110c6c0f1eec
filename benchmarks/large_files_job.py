"""Multi-gigabyte files through the whole staged path, on the local sandbox.

    .venv/bin/snakemake-awsbatch-sandbox run -- \
        .venv/bin/python benchmarks/large_files_job.py --gib 3

One rule on AWS Batch (the sandbox) reads a local input of --gib GiB and writes an output
of half its size: the plugin uploads the input, the job's runner downloads it into its
scratch directory, runs the rule, uploads the output, and the plugin brings it back and
verifies it. Prints the wall time, the plugin's staging summary, and whether the output
is byte for byte what the rule must write. Needs the sandbox's environment (`run` or
`eval "$(snakemake-awsbatch-sandbox env)"`).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GiB = 1024**3
SNAKEFILE = """
rule half:
    input: "data/big.bin"
    output: "results/half.bin"
    resources: mem_mb=512
    shell: "head -c {half} {{input}} > {{output}}"
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--gib", type=float, default=3.0, help="size of the input in GiB")
    args = p.parse_args()
    if "SNAKEMAKE_AWSBATCH_S3_PREFIX" not in os.environ:
        sys.exit("run this in the sandbox's environment: snakemake-awsbatch-sandbox run -- ...")
    size = int(args.gib * GiB)
    with tempfile.TemporaryDirectory(prefix="large-files-job-") as tmp:
        work = Path(tmp)
        (work / "Snakefile").write_text(SNAKEFILE.format(half=size // 2))
        expected = _write_random(work / "data" / "big.bin", size, size // 2)
        prefix = f"{os.environ['SNAKEMAKE_AWSBATCH_S3_PREFIX'].rstrip('/')}/large-{os.getpid()}"
        start = time.monotonic()
        done = subprocess.run(
            [
                *(sys.executable, "-m", "snakemake", "--executor", "awsbatch", "--jobs", "1"),
                *("--awsbatch-s3-prefix", prefix, "--seconds-between-status-checks", "2"),
            ],
            cwd=work,
            capture_output=True,
            text=True,
            check=False,
        )
        took = time.monotonic() - start
        output = done.stdout + done.stderr
        if done.returncode != 0:
            sys.exit(output[-5000:])
        summary = re.search(r"staging uploaded .*", output)
        got = _sha256(work / "results" / "half.bin")
    print(f"input {size / GiB:.2f} GiB, output {size // 2 / GiB:.2f} GiB: {took:.1f} s end to end")
    print(summary.group(0) if summary else "no staging summary in the output")
    if got != expected:
        sys.exit(f"output sha256 {got}: WRONG, expected {expected}")
    print(f"output sha256 {got}: as expected")


def _write_random(path: Path, size: int, prefix_size: int) -> str:
    """Write `size` random bytes; return the SHA-256 of the first `prefix_size` of them."""
    path.parent.mkdir(parents=True)
    digest = hashlib.sha256()
    written = 0
    with open(path, "wb") as f:
        while written < size:
            block = os.urandom(min(64 * 1024**2, size - written))
            f.write(block)
            head = block[: max(0, prefix_size - written)]
            digest.update(head)
            written += len(block)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


if __name__ == "__main__":
    main()
