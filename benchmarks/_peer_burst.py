"""How fast this plugin submits: N independent jobs with `--jobs N`, through a proxy that
lets SubmitJob through at 50 per second (Batch's account-wide rate; above it the proxy
answers 429 TooManyRequestsException, which botocore retries).

Three times: as the plugin runs by default (alike jobs ready together go to Batch as
array jobs, so few SubmitJob calls) under Snakemake's own default job rate
(`--max-jobs-per-timespan 100/1s`, which hands any executor at most 100 jobs a second);
the same with that rate lifted (`1000/1s`, what docs/scale.md advises for large runs);
and lifted with `--awsbatch-no-arrays` (one SubmitJob per job, the case Batch's limit is
about). Measured at the proxy (first to last SubmitJob), from
Snakemake's "Execute N jobs" line to the last SubmitJob, and the plugin's own figure
("Submitted N jobs as M Batch submissions in X s"). The run is stopped (SIGINT, what
Ctrl-C does) once all N are submitted: the point is the submission, and the plugin then
terminates every job of the run; whatever is still active later is terminated here.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _peer_runs as runs
import _peer_workflow as wf

SUBMIT = "batch:SubmitJob"
LIFTED = ["--max-jobs-per-timespan", "1000/1s"]
VARIANTS = {
    "arrays": [],
    "arrays-lifted": LIFTED,
    "no-arrays-lifted": [*LIFTED, "--awsbatch-no-arrays"],
}
# The plugin's submission lines: one job, or an array of K jobs (dispatch.py).
ONE = re.compile(r"Submitted rule \S+ \(Snakemake job ")
MANY = re.compile(r"Submitted (\d+) jobs of rule ")
OWN = re.compile(r"Submitted \d+ jobs as \d+ Batch submissions in [\d.]+ s")


def run(ctx: runs.Context, tmp: Path, job: runs.ProxyProcess, n: int, limit: str) -> dict[str, Any]:
    upstream = ctx.sandbox.env["AWS_ENDPOINT_URL"]
    results = {}
    for variant, extra in VARIANTS.items():
        proxy = runs.ProxyProcess(upstream, tmp, f"burst-{variant}", limits=(limit,)).start()
        try:
            results[variant] = _measure(ctx, tmp, proxy, job, n, limit, variant, extra)
        finally:
            proxy.stop()
    summary = "; ".join(f"{v}: {r['summary']}" for v, r in results.items())
    return {"n": n, "limit": limit, "variants": results, "summary": summary}


def _measure(
    ctx: runs.Context,
    tmp: Path,
    proxy: runs.ProxyProcess,
    job: runs.ProxyProcess,
    n: int,
    limit: str,
    variant: str,
    extra: list[str],
) -> dict[str, Any]:
    work = wf.write_burst(tmp / f"burst-{variant}", n)
    base = ctx.sandbox.env["SNAKEMAKE_AWSBATCH_S3_PREFIX"].rstrip("/")
    prefix = f"{base}/peers-burst-{os.getpid()}-{variant}"
    argv = [
        *(sys.executable, "-m", "snakemake", "--jobs", str(n), "--executor", "awsbatch"),
        *("--awsbatch-s3-prefix", prefix, *extra, "--envvars", "AWS_ENDPOINT_URL"),
    ]
    env = runs.environment(ctx.sandbox, proxy.url, job.url)
    line = runs.shell_line(argv, {"AWS_ENDPOINT_URL_<SERVICE>": proxy.url})
    print(f"\n[burst {variant}] {line}  (proxy limit {limit})", flush=True)
    output = tmp / f"burst-{variant}.log"
    started = time.time()
    with output.open("w") as sink:
        process = subprocess.Popen(argv, cwd=work, env=env, stdout=sink, stderr=subprocess.STDOUT)
    executed_at = _wait_for_submissions(process, output, n, timeout=max(600, n))
    stats = proxy.stats()
    _stop(process)
    text = output.read_text(errors="replace")
    run_id = runs.run_id_of(text)
    plugin = runs.PLUGINS["awsbatch-staged"]
    # The plugin terminates its jobs on SIGINT; it gets time for that first.
    leftovers = runs.terminate_leftovers(ctx.sandbox, started, plugin, run_id, wait=120)
    result = _result(n, limit, line, stats, executed_at, text)
    result.update(run_id=run_id, leftover_jobs_terminated=leftovers)
    print(f"[burst {variant}] {result['summary']}", flush=True)
    return result


def _wait_for_submissions(
    process: subprocess.Popen[bytes], output: Path, n: int, timeout: float
) -> float | None:
    """Until the plugin has logged n jobs as submitted (or the run ended); -> when
    Snakemake first printed "Execute K jobs" (epoch): it hands the jobs over."""
    executed_at = None
    deadline = time.monotonic() + timeout
    execute = re.compile(r"Execute \d+ jobs")
    reached = None
    while time.monotonic() < deadline and process.poll() is None:
        text = output.read_text(errors="replace")
        if executed_at is None and execute.search(text):
            executed_at = time.time()
        if reached is None and submitted_jobs(text) >= n:
            reached = time.monotonic()
        # The plugin's own summary line comes right after its last submission line.
        if reached is not None and (OWN.search(text) or time.monotonic() - reached > 2):
            break
        time.sleep(0.05)
    return executed_at


def submitted_jobs(text: str) -> int:
    return len(ONE.findall(text)) + sum(int(k) for k in MANY.findall(text))


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=600)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _result(
    n: int,
    limit: str,
    line: str,
    stats: dict[str, Any],
    executed_at: float | None,
    text: str,
) -> dict[str, Any]:
    first = stats.get("first", {}).get(SUBMIT)
    last = stats.get("last", {}).get(SUBMIT)
    calls = stats.get("calls", {}).get(SUBMIT, 0)
    throttled = stats.get("throttled", {}).get(SUBMIT, 0)
    span = (last - first) if first and last else None
    from_execute = (last - executed_at) if last and executed_at else None
    own = OWN.findall(text)
    summary = f"{submitted_jobs(text)} of {n} jobs submitted with {calls} SubmitJob calls"
    if span is not None:
        summary += f", {span:.1f} s first to last SubmitJob"
    if from_execute is not None:
        summary += f", {from_execute:.1f} s from Snakemake's first 'Execute' to the last SubmitJob"
    summary += f", {throttled} throttled"
    if own:
        summary += f"; the plugin: '{own[-1]}'"
    return {
        "command": line,
        "submitted_jobs": submitted_jobs(text),
        "submit_calls": calls,
        "throttled": throttled,
        "first_to_last_submit_s": round(span, 2) if span is not None else None,
        "execute_line_to_last_submit_s": round(from_execute, 2) if from_execute else None,
        "calls": stats.get("calls", {}),
        "plugin_figure": own[-1] if own else None,
        "summary": summary,
    }
