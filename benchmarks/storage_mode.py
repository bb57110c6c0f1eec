"""The example variant-calling pipeline on the sandbox, staged mode against S3 storage mode.

    .venv/bin/snakemake-awsbatch-sandbox run -- .venv/bin/python benchmarks/storage_mode.py
    (add --rounds 3 for three rounds, the modes alternating which goes first)

Each round runs workflows/variant-calling from a fresh copy, with the awsbatch profile,
once in each mode (their order alternates between rounds):

- `staged`: the plugin stages sources and inputs through S3 and brings every output, log
  and benchmark back into the working directory;
- `storage`: `--default-storage-provider s3`: the data stays in S3.

Measured: wall time, and the bytes the submitting machine sent to and received from S3,
counted at the endpoint: the submitting Snakemake reaches S3 through a counting proxy
(boto3's AWS_ENDPOINT_URL_S3), the jobs do not. Each run must find every planted variant
(summary.json: precision and recall 1.0), read from the working directory or from S3.
Prints a table and adds the invocation to the JSON (`--json`, default
benchmarks/storage-mode-results.json; earlier invocations are kept).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._peer_runs import ProxyProcess  # noqa: E402
from tests.workflows import variant_calling as vc  # noqa: E402

MODES = ("staged", "storage")
MiB = 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--jobs", type=int, default=5, help="snakemake --jobs (default 5)")
    p.add_argument("--json", default="benchmarks/storage-mode-results.json", help="'' for none")
    p.add_argument("--note", default="", help="what else ran on the machine, for the record")
    args = p.parse_args()
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    base = os.environ.get("SNAKEMAKE_AWSBATCH_S3_PREFIX")
    if not endpoint or not base:
        sys.exit("run this inside the sandbox: snakemake-awsbatch-sandbox run -- ...")
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="storage-mode-") as tmp:
        proxy = ProxyProcess(endpoint, Path(tmp), "submit").start()
        try:
            for round_ in range(args.rounds):
                order = MODES if round_ % 2 == 0 else MODES[::-1]
                for mode in order:
                    prefix = f"{base.rstrip('/')}/bench-{mode}-{uuid.uuid4().hex[:8]}"
                    workdir = vc.copy_workflow(Path(tmp) / f"{mode}-{round_}")
                    run = measure(mode, workdir, prefix, proxy, args.jobs)
                    run["round"] = round_ + 1
                    runs.append(run)
                    print(line(run), flush=True)
        finally:
            proxy.stop()
    print(table(runs))
    if args.json:  # every invocation is kept: figures are reported run by run
        path = Path(args.json)
        kept = json.loads(path.read_text())["invocations"] if path.exists() else []
        report = {"command": " ".join(sys.argv), "jobs": args.jobs, "runs": runs}
        if args.note:
            report["note"] = args.note
        path.write_text(json.dumps({"invocations": [*kept, report]}, indent=1) + "\n")


def measure(mode: str, workdir: Path, prefix: str, proxy: ProxyProcess, jobs: int) -> dict:
    if mode == "storage":
        location = ["--default-storage-provider", "s3", "--default-storage-prefix", prefix]
    else:
        location = ["--awsbatch-s3-prefix", prefix]
    command = [sys.executable, "-m", "snakemake", "--profile", str(vc.PROFILES_DIR / "awsbatch")]
    command += ["--jobs", str(jobs), "--retries", "0", *location]
    env = {**os.environ, "AWS_ENDPOINT_URL_S3": proxy.url}
    proxy.reset()
    started = time.monotonic()
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"{mode} run failed:\n{(done.stdout + done.stderr)[-4000:]}")
    stats = proxy.stats()
    up = sum(v for k, v in stats["bytes_up"].items() if k.startswith("s3:"))
    down = sum(v for k, v in stats["bytes_down"].items() if k.startswith("s3:"))
    calls = sum(v for k, v in stats["calls"].items() if k.startswith("s3:"))
    return {
        "mode": mode,
        "seconds": round(seconds, 1),
        "s3_bytes_up": up,
        "s3_bytes_down": down,
        "s3_calls": calls,
        "accuracy": accuracy(mode, workdir, prefix),
    }


def accuracy(mode: str, workdir: Path, prefix: str) -> dict[str, list[float]]:
    """Each sample's (precision, recall), from the run's summary.json."""
    path = "results/report/summary.json"
    if mode == "staged":
        text = (workdir / path).read_text()
    else:
        bucket, _, key = prefix.removeprefix("s3://").partition("/")
        text = boto3.client("s3").get_object(Bucket=bucket, Key=f"{key}/{path}")["Body"].read()
    samples = json.loads(text)["samples"]
    found = {name: [m["precision"], m["recall"]] for name, m in samples.items()}
    if any(pr != [1.0, 1.0] for pr in found.values()):
        sys.exit(f"{mode} run missed planted variants: {found}")
    return found


def line(run: dict[str, Any]) -> str:
    return (
        f"round {run['round']} {run['mode']:8s} {run['seconds']:7.1f} s  "
        f"S3 through this machine: up {run['s3_bytes_up'] / MiB:7.2f} MiB, "
        f"down {run['s3_bytes_down'] / MiB:7.2f} MiB, {run['s3_calls']} calls"
    )


def table(runs: list[dict[str, Any]]) -> str:
    rows = ["| round | mode | wall time | S3 up | S3 down | S3 calls |", "| --- " * 6 + "|"]
    for r in runs:
        rows.append(
            f"| {r['round']} | {r['mode']} | {r['seconds']:.1f} s | "
            f"{r['s3_bytes_up'] / MiB:.2f} MiB | {r['s3_bytes_down'] / MiB:.2f} MiB | "
            f"{r['s3_calls']} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    main()
