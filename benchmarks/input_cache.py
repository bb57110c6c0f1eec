"""The instance's input cache on the sandbox: 20 jobs reading one 200 MB input, cache on and off.

    .venv/bin/snakemake-awsbatch-sandbox run -- .venv/bin/python benchmarks/input_cache.py

One workflow: `--jobs` jobs (default 20) of one rule, each hashing the same input of
`--mb` MB (default 200), run at `-j --parallel` (default 4) on the sandbox, which is one
instance (every job container mounts its scratch root). Once with
`--awsbatch-input-cache 25%` (the default) and once with `off`, per round; each round has
a fresh random input (so the cache starts cold for it) and each run a fresh S3 prefix
(both upload the input once). Measured per run:

- wall time of the submitting `snakemake` process;
- the jobs' S3 requests, counted at the endpoint: the jobs reach S3 through a counting
  proxy (sandbox/proxy.py, a process of its own) that AWS_ENDPOINT_URL names and
  `--envvars AWS_ENDPOINT_URL` passes into the jobs; the submitting side goes straight to
  moto (boto3's per-service endpoint variables, as benchmarks/_peer_runs.py does);
- what each runner says it downloaded, from its log in CloudWatch (`input cache: ...`):
  bytes downloaded into the cache, bytes downloaded straight into scratch, hits.

Prints a line per run and adds the invocation, every run of it, to a JSON file (`--json`,
default benchmarks/input-cache-results.json; earlier invocations are kept).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import _peer_runs as peer  # noqa: E402

from snakemake_executor_plugin_awsbatch.sandbox import testing  # noqa: E402
from tests.e2e import runs  # noqa: E402

SNAKEFILE = """
localrules: all

rule all:
    input: expand("results/{{i}}.txt", i=range({jobs}))

rule read:
    input: "data/ref.bin"
    output: "results/{{i}}.txt"
    shell: "sha256sum {{input}} > {{output}}"
"""
MB = 1_000_000
ON, OFF = "25%", "off"
CACHED = re.compile(
    r"input cache: (\d+) hits? \(([\d.]+) MB linked\), (\d+) files? \(([\d.]+) MB\) downloaded "
    r"into the cache, (\d+) files? \(([\d.]+) MB\) not cached"
)
UNCACHED = re.compile(r"input cache: off; (\d+) files? \(([\d.]+) MB\) downloaded")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--jobs", type=int, default=20, help="jobs reading the input")
    p.add_argument("--parallel", type=int, default=4, help="Snakemake's --jobs")
    p.add_argument("--mb", type=int, default=200, help="size of the shared input in MB")
    p.add_argument("--rounds", type=int, default=1, help="rounds of (on, off), order alternating")
    p.add_argument("--json", default="benchmarks/input-cache-results.json", help="'' for none")
    p.add_argument("--note", default="", help="what else ran on the machine, for the JSON")
    args = p.parse_args()
    if "SNAKEMAKE_AWSBATCH_SANDBOX_DIR" not in os.environ:
        sys.exit("run this in the sandbox's environment: snakemake-awsbatch-sandbox run -- ...")
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    sandbox = testing.acquire(Path(tempfile.gettempdir()))
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="input-cache-bench-") as tmp:
        proxy = peer.ProxyProcess(sandbox.env["AWS_ENDPOINT_URL"], Path(tmp), "jobs").start()
        try:
            for round_no in range(args.rounds):
                body = os.urandom(args.mb * MB)
                modes = (ON, OFF) if round_no % 2 == 0 else (OFF, ON)
                for mode in modes:
                    work = Path(tmp) / f"r{round_no}-{mode.rstrip('%')}"
                    result = run(sandbox, proxy, work, body, mode, args)
                    result["round"] = round_no
                    results.append(result)
                    print(line(result), flush=True)
        finally:
            proxy.stop()
            testing.release()
    invocation = {
        "started": started_at,
        "machine": f"{platform.platform()}, {os.cpu_count()} cores",
        "load_average_at_end": os.getloadavg(),
        "note": args.note,
        "jobs": args.jobs,
        "parallel": args.parallel,
        "input_bytes": args.mb * MB,
        "runs": results,
    }
    if args.json:
        record(Path(args.json), invocation)
        print(f"added to {args.json}")


def record(path: Path, invocation: dict[str, Any]) -> None:
    """Every invocation's runs are kept: the file is appended to, never overwritten."""
    kept = json.loads(path.read_text()) if path.exists() else {"benchmark": "input_cache"}
    kept.setdefault("invocations", []).append(invocation)
    path.write_text(json.dumps(kept, indent=1) + "\n")


def run(
    sandbox: testing.RunningSandbox,
    proxy: peer.ProxyProcess,
    work: Path,
    body: bytes,
    mode: str,
    args: argparse.Namespace,
) -> dict[str, Any]:
    (work / "data").mkdir(parents=True)
    (work / "Snakefile").write_text(SNAKEFILE.format(jobs=args.jobs))
    (work / "data" / "ref.bin").write_bytes(body)
    base = sandbox.env["SNAKEMAKE_AWSBATCH_S3_PREFIX"].rstrip("/")
    prefix = f"{base}/input-cache-{uuid.uuid4().hex[:8]}"
    argv = [
        *(sys.executable, "-m", "snakemake", "--executor", "awsbatch"),
        *("--jobs", str(args.parallel), "--awsbatch-s3-prefix", prefix),
        *("--awsbatch-input-cache", mode, "--seconds-between-status-checks", "2"),
        # Last: it takes a list. Only the measuring hook: jobs reach S3 through the proxy.
        *("--envvars", "AWS_ENDPOINT_URL"),
    ]
    env = peer.environment(sandbox, sandbox.env["AWS_ENDPOINT_URL"], proxy.url)
    proxy.reset()
    measured = peer.run_measured(argv, work, env, timeout=1800, output=work / "snakemake.out")
    calls = proxy.stats()["calls"]
    output = measured.output_file.read_text(errors="replace")
    if measured.status != "ok":
        sys.exit(f"{mode}: {measured.status}\n{output[-5000:]}")
    digest = hashlib.sha256(body).hexdigest()
    wrong = [i for i in range(args.jobs) if digest not in (work / f"results/{i}.txt").read_text()]
    run_id = peer.run_id_of(output)
    assert run_id is not None
    jobs = runs.Batch(sandbox).jobs_of_run(run_id)
    logged = runs.poll(lambda: runner_lines(sandbox, jobs), 120, "the runners' logs")
    return {
        "mode": mode,
        "wall_s": round(measured.wall_s, 2),
        "correct": not wrong,
        "batch_jobs": len(jobs),
        "jobs_s3_calls": {k: v for k, v in calls.items() if k.startswith("s3:")},
        "runner_downloaded_mb": round(sum(r["downloaded_mb"] for r in logged), 1),
        "runner_cached_mb": round(sum(r["cached_mb"] for r in logged), 1),
        "hits": sum(r["hits"] for r in logged),
        "downloads_into_cache": sum(r["misses"] for r in logged),
        "per_job": logged,
    }


def runner_lines(sandbox: testing.RunningSandbox, jobs: list[dict]) -> list[dict[str, Any]]:
    """Each runner's `input cache:` line, parsed; [] until every job's log is there."""
    logs = sandbox.session().client("logs")
    parsed = []
    for job in jobs:
        try:
            events = logs.get_log_events(
                logGroupName="/aws/batch/job",
                logStreamName=job["container"]["logStreamName"],
                startFromHead=True,
            )["events"]
        except (KeyError, logs.exceptions.ResourceNotFoundException):
            return []
        text = "\n".join(e["message"] for e in events)
        if m := CACHED.search(text):
            hits, misses, straight = int(m[1]), int(m[3]), int(m[5])
            into_cache, not_cached = float(m[4]), float(m[6])
            parsed.append(
                {
                    "hits": hits,
                    "misses": misses,
                    "straight_files": straight,
                    "cached_mb": into_cache,
                    "downloaded_mb": into_cache + not_cached,
                }
            )
        elif m := UNCACHED.search(text):
            parsed.append(
                {
                    "hits": 0,
                    "misses": 0,
                    "straight_files": int(m[1]),
                    "cached_mb": 0.0,
                    "downloaded_mb": float(m[2]),
                }
            )
        else:
            return []
    return parsed


def line(r: dict[str, Any]) -> str:
    gets = r["jobs_s3_calls"].get("s3:GetObject", 0)
    heads = r["jobs_s3_calls"].get("s3:HeadObject", 0)
    return (
        f"round {r['round']} cache {r['mode']:>4}: {r['wall_s']:7.1f} s, "
        f"{r['batch_jobs']} jobs, runners downloaded {r['runner_downloaded_mb']:8.1f} MB "
        f"({r['downloads_into_cache']} into the cache, {r['hits']} hits), "
        f"jobs' GetObject {gets}, HeadObject {heads}, correct {r['correct']}"
    )


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"benchmark took {time.monotonic() - started:.0f} s")
