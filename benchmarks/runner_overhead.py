"""Per-job overhead inside the container: from the runner's start to the rule's command.

    .venv/bin/python benchmarks/runner_overhead.py [--runs 10] [--inputs 5]

Runs the real runner (`python -m snakemake_executor_plugin_awsbatch.jobside`) on a
manifest with a few small inputs (a Snakefile, scripts, a config) and one output, twice
per run:

- `bare`: the manifest's command itself first records `$EPOCHREALTIME`: the runner's own
  overhead;
- `snakemake`: the command is what the plugin really sends, the job's Snakemake in remote
  mode (`python -m snakemake --target-jobs ... --mode remote`), and the rule's shell
  command records `$EPOCHREALTIME`: what a job pays before its rule starts. The runner
  runs it in a fork of itself (jobside/command.py);
- `snakemake-bash`: the same command as `exec python -m snakemake ...`, which the runner
  gives to bash: a new interpreter, as every job ran before the fork.

Reports the time from spawning the runner to that first instruction, with and without
the input download, and the runner's own phases from its report. Uses AWS_ENDPOINT_URL
if set, else a moto server of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import dummy_credentials, s3_endpoint

BUCKET = "runner-overhead"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--inputs", type=int, default=5, help="small input files per job")
    p.add_argument("--json", default="benchmarks/runner-overhead-results.json", help="'' for none")
    args = p.parse_args()
    dummy_credentials()
    results = {}
    with tempfile.TemporaryDirectory(prefix="runner-overhead-") as tmp, s3_endpoint():
        for kind in ("bare", "snakemake", "snakemake-bash"):
            rows = [_one_run(Path(tmp), kind, i, args.inputs) for i in range(args.runs)]
            summary = {k: _stats([r[k] for r in rows]) for k in rows[0]}
            results[kind] = {"summary": summary, "runs": rows}
            print(f"\n{kind}: {args.runs} runs, {args.inputs} inputs each; s (median/min/max)")
            for key, s in summary.items():
                print(f"  {key:38} {s['median']:6.3f} {s['min']:6.3f} {s['max']:6.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"command": " ".join(sys.argv), **results}, indent=1))


# The command the plugin sends for a one-rule job (format_job_exec), less the arguments
# that only matter with storage or shared file systems.
JOB_SNAKEMAKE_ARGS = (
    "--snakefile Snakefile --target-jobs 'hello:' --allowed-rules hello"
    " --cores all --attempt 1 --force-use-threads --force --target-files-omit-workdir-adjustment"
    " --max-inventory-time 0 --retries 0 --nocolor --no-hooks --nolock --ignore-incomplete"
    " --shared-fs-usage none --latency-wait 5 --quiet progress rules host"
    " --max-jobs-per-timespan 100/0s --mode remote"
)
SNAKEFILE = """
rule hello:
    output: "results/out.txt"
    shell: "echo $EPOCHREALTIME > {marker}; echo done > {{output}}"
"""


def _one_run(tmp: Path, kind: str, i: int, n_inputs: int) -> dict[str, float]:
    import boto3

    from snakemake_executor_plugin_awsbatch.jobside.manifest import (
        InputEntry,
        Manifest,
        OutputEntry,
    )
    from snakemake_executor_plugin_awsbatch.transfer import UploadItem, upload_files

    s3 = boto3.client("s3")
    if i == 0:
        s3.create_bucket(Bucket=BUCKET)
    src = tmp / "src"
    src.mkdir(exist_ok=True)
    names = ["Snakefile", "config.yaml"] + [f"scripts/step{k}.py" for k in range(n_inputs - 2)]
    marker = tmp / f"first-instruction-{kind}-{i}"
    for name in names:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(f"# {name}\n" * 200)
    (src / "Snakefile").write_text(SNAKEFILE.format(marker=marker))
    staged = upload_files(
        [UploadItem(src / n, f"s3://{BUCKET}/files/{kind}{i}/{n}") for n in names]
    )
    if kind == "bare":
        command = f"echo $EPOCHREALTIME > {marker}; mkdir -p results; echo done > results/out.txt"
    elif kind == "snakemake":
        command = f"python -m snakemake {JOB_SNAKEMAKE_ARGS}"
    else:
        command = f"exec python -m snakemake {JOB_SNAKEMAKE_ARGS}"
    manifest = Manifest(
        run_id="bench",
        jobname=f"job{i}",
        command=command,
        report_uri=f"s3://{BUCKET}/runs/job{i}/report.json",
        inputs=[
            InputEntry(n, r.uri, r.sha256, r.size)
            for n, r in zip(names, staged.results, strict=True)
        ],
        outputs=[OutputEntry("results/out.txt", f"s3://{BUCKET}/files/results/out{i}.txt")],
    )
    s3.put_object(Bucket=BUCKET, Key=f"runs/job{i}/manifest.json", Body=manifest.to_json())
    scratch = tmp / "scratch"
    runner = [sys.executable, "-m", "snakemake_executor_plugin_awsbatch.jobside"]
    start = time.time()
    # `python` is this venv's, as in the job image.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    subprocess.run(
        [*runner, f"s3://{BUCKET}/runs/job{i}/manifest.json", "--scratch-root", str(scratch)],
        check=True,
        capture_output=True,
        env=env,
    )
    end = time.time()
    body = s3.get_object(Bucket=BUCKET, Key=f"runs/job{i}/report.json")["Body"].read()
    phases = json.loads(body)["phases"]
    to_command = float(marker.read_text()) - start
    return {
        "start to command": to_command,
        "start to command, minus download": to_command - phases["download"],
        "whole runner, minus command+transfers": end
        - start
        - phases["command"]
        - phases["download"]
        - phases["upload"],
        **{f"phase {k}": v for k, v in phases.items()},
    }


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


if __name__ == "__main__":
    main()
