"""This plugin and its peers side by side on the local sandbox, in one invocation.

    .venv/bin/python benchmarks/peers.py                       # N=50 and 500, every plugin
    .venv/bin/python benchmarks/peers.py --sizes 50 --rounds 3
    .venv/bin/python benchmarks/peers.py --plugins awsbatch-staged,aws-basic-batch --sizes 500
    .venv/bin/python benchmarks/peers.py --setup               # only create the peers' venvs
    .venv/bin/python benchmarks/peers.py --sizes 50 --submit-burst 1000

Plugins (--plugins): awsbatch-staged and awsbatch-storage (this plugin, staged and with
S3 storage), aws-batch (snakemake-executor-plugin-aws-batch) and aws-basic-batch
(snakemake-executor-plugin-aws-basic-batch), each as its documentation says to run it.
Workflow: a scatter of N jobs reading one shared input and a gather job; correct means
result.txt equals that of a local run. Per run: wall time, the submitting Snakemake's CPU
time (with its children), and the Batch and S3 calls counted at the endpoint by two
proxies (submitting side, jobs). Uses the sandbox $SNAKEMAKE_AWSBATCH_SANDBOX_DIR names,
else starts one and stops it at the end. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _peer_runs as runs
import _peer_setup as setup
import _peer_workflow as wf

from snakemake_executor_plugin_awsbatch.sandbox import testing

DEFAULT_PLUGINS = ("awsbatch-staged", "awsbatch-storage", "aws-batch", "aws-basic-batch")
BURST_SUBMIT_LIMIT = "SubmitJob=50"


def main() -> None:
    args = _parse_args()
    host = setup.host_versions()
    versions = {"awsbatch": host}
    for plugin in args.plugins:
        if plugin in setup.PEER_VENVS:
            versions[plugin] = setup.ensure_venv(setup.PEER_VENVS[plugin], host)
    _print_versions(versions)
    if args.setup:
        return
    # Short: a sandbox started here keeps its podman socket under it (108-byte limit).
    with tempfile.TemporaryDirectory(prefix="peers-", dir="/tmp") as tmp:
        report = _benchmark(args, Path(tmp), versions)
    _print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
        print(f"\nwritten: {args.json}")


def _parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="50,500", help="scatter sizes N, comma-separated")
    p.add_argument("--plugins", default=",".join(DEFAULT_PLUGINS), help="comma-separated")
    p.add_argument("--rounds", type=int, default=1, help="the plugins' order rotates")
    p.add_argument("--jobs", type=int, default=8, help="Snakemake's --jobs for every plugin")
    p.add_argument("--timeout", type=float, default=1800, help="per run, seconds")
    p.add_argument(
        "--submit-burst", type=int, default=0, metavar="N", help="see docs/benchmarks.md"
    )
    p.add_argument("--json", default="benchmarks/peers-results.json", help="'' for none")
    p.add_argument("--setup", action="store_true", help="create the peers' venvs and stop")
    args = p.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    args.plugins = [s for s in args.plugins.split(",") if s]
    unknown = [s for s in args.plugins if s not in runs.PLUGINS]
    if unknown:
        p.error(f"unknown plugin(s) {', '.join(unknown)}; known: {', '.join(runs.PLUGINS)}")
    return args


def _print_versions(versions: dict[str, dict[str, str]]) -> None:
    print("versions:")
    for venv, found in versions.items():
        print(f"  {venv:16} " + ", ".join(f"{k} {v}" for k, v in sorted(found.items())))


def _benchmark(args: argparse.Namespace, tmp: Path, versions: dict[str, Any]) -> dict[str, Any]:
    sandbox = testing.acquire(tmp)
    proxies: list[runs.ProxyProcess] = []
    built: list[str] = []
    definitions: list[str] = []
    try:
        upstream = sandbox.env["AWS_ENDPOINT_URL"]
        submit = runs.ProxyProcess(upstream, tmp, "submit").start()
        proxies.append(submit)
        job = runs.ProxyProcess(upstream, tmp, "job").start()
        proxies.append(job)
        print(
            f"sandbox {sandbox.state_dir} (moto {upstream}); proxies: submitting side "
            f"{submit.url}, jobs {job.url} ({' '.join(runs.proxy_command()[1:])})"
        )
        ctx = _context(args, sandbox, tmp, built, definitions)
        bench = _Bench(ctx, tmp, submit, job, args.timeout)
        rows = bench.all_rounds(args.plugins, args.sizes, args.rounds)
        burst = _burst(args, ctx, tmp, job) if args.submit_burst else None
    finally:
        for proxy in proxies:
            proxy.stop()
        _clean_up(sandbox, built, definitions)
    return {
        "command": " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "versions": versions,
        "sandbox_started_here": sandbox.started_here,
        "proxy": " ".join(runs.proxy_command()[1:]),
        "jobs": args.jobs,
        "runs": rows,
        "summary": _summary(rows),
        "submit_burst": burst,
    }


def _context(
    args: argparse.Namespace,
    sandbox: testing.RunningSandbox,
    tmp: Path,
    built: list[str],
    definitions: list[str],
) -> runs.Context:
    ctx = runs.Context(sandbox, args.jobs, job_role=_job_role(sandbox))
    ctx.pythons = {
        key: str(setup.PEER_VENVS[key].python) if key in setup.PEER_VENVS else sys.executable
        for key in runs.PLUGINS
    }
    conf = sandbox.state_dir / "containers.conf"
    if "aws-batch" in args.plugins:
        ctx.images["aws-batch"] = setup.official_image(conf, sandbox.image)
        built.append(ctx.images["aws-batch"])
    for n in args.sizes:
        workflow = wf.write_scatter_gather(tmp / f"workflow-n{n}", n)
        ctx.workflows[n] = workflow
        ctx.expected[n] = wf.local_result(workflow, tmp / f"local-n{n}")
        if "aws-basic-batch" in args.plugins:
            image = setup.basic_image(conf, sandbox.image, workflow)
            built.append(image)
            batch = sandbox.session().client("batch")
            ctx.job_definitions[n] = setup.basic_job_definition(
                batch, f"peers-aws-basic-batch-n{n}", image
            )
            definitions.append(ctx.job_definitions[n])
    return ctx


def _job_role(sandbox: testing.RunningSandbox) -> str:
    """The stack's job role: aws-batch requires one (--aws-batch-job-role)."""
    cfn = sandbox.session().client("cloudformation")
    stack = cfn.describe_stacks(StackName=sandbox.stack_name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return outputs["JobRoleArn"]


def _clean_up(sandbox: testing.RunningSandbox, built: list[str], definitions: list[str]) -> None:
    batch = sandbox.session().client("batch")
    for definition in definitions:
        batch.deregister_job_definition(jobDefinition=definition)
    testing.release()
    setup.remove_images(sandbox.state_dir / "containers.conf", built)


class _Bench:
    def __init__(
        self,
        ctx: runs.Context,
        tmp: Path,
        submit: runs.ProxyProcess,
        job: runs.ProxyProcess,
        timeout: float,
    ):
        self.ctx, self.tmp, self.submit, self.job, self.timeout = ctx, tmp, submit, job, timeout
        self.base_prefix = (
            f"{ctx.sandbox.env['SNAKEMAKE_AWSBATCH_S3_PREFIX'].rstrip('/')}"
            f"/peers-{time.strftime('%Y%m%d-%H%M%S')}"
        )
        self.s3 = ctx.sandbox.session().client("s3")

    def all_rounds(self, plugins: list[str], sizes: list[int], rounds: int) -> list[dict]:
        rows = []
        for r in range(rounds):
            order = plugins[r % len(plugins) :] + plugins[: r % len(plugins)]
            for n in sizes:
                for key in order:
                    rows.append(self.one(runs.PLUGINS[key], n, r + 1))
        return rows

    def one(self, plugin: runs.Plugin, n: int, round_no: int) -> dict[str, Any]:
        name = f"{plugin.key}-n{n}-r{round_no}"
        work = wf.fresh_copy(self.ctx.workflows[n], self.tmp / "runs" / name)
        prefix = f"{self.base_prefix}/{name}"
        if plugin.storage:
            # In storage mode the workflow's input is looked up in S3: put it there first.
            self.s3.upload_file(str(work / wf.INPUT), *_split(f"{prefix}/{wf.INPUT}"))
        argv = runs.command(self.ctx, plugin, n, prefix)
        env = runs.environment(self.ctx.sandbox, self.submit.url, self.job.url)
        shown = {"AWS_ENDPOINT_URL": self.job.url, "AWS_ENDPOINT_URL_<SERVICE>": self.submit.url}
        line = runs.shell_line(argv, shown)
        print(f"\n[{name}] {line}", flush=True)
        self.submit.reset()
        self.job.reset()
        measured = runs.run_measured(argv, work, env, self.timeout, self.tmp / f"{name}.log")
        row = self._row(plugin, n, round_no, measured, line, prefix, work)
        print(
            f"[{name}] {row['status']}, correct: {row['correct']}, {row['wall_s']:.1f} s, "
            f"CPU {row['cpu_s']:.1f} s, {row['batch_calls_per_job']:.2f} Batch calls/job, "
            f"S3 {row['s3_requests_submit']} + {row['s3_requests_job']} (jobs)",
            flush=True,
        )
        return row

    def _row(
        self,
        plugin: runs.Plugin,
        n: int,
        round_no: int,
        m: runs.Measured,
        line: str,
        prefix: str,
        work: Path,
    ) -> dict[str, Any]:
        submit_calls = self.submit.stats().get("calls", {})
        job_calls = self.job.stats().get("calls", {})
        output = m.output_file.read_text(errors="replace")
        leftovers = 0
        if m.status != "ok":
            run_id = runs.run_id_of(output)
            leftovers = runs.terminate_leftovers(self.ctx.sandbox, m.started_epoch, plugin, run_id)
        got = self._result(plugin, prefix, work)
        jobs = n + 1  # the scatter jobs and the gather job; `all` is local
        batch_total, batch_ops = runs.totals(submit_calls, "batch")
        s3_submit, s3_submit_ops = runs.totals(submit_calls, "s3")
        s3_job, s3_job_ops = runs.totals(job_calls, "s3")
        row: dict[str, Any] = {
            "plugin": plugin.key,
            "n": n,
            "round": round_no,
            "snakemake_jobs": jobs,
            "status": m.status,
            "correct": got == self.ctx.expected[n],
            "wall_s": round(m.wall_s, 2),
            "cpu_s": round(m.cpu_user_s + m.cpu_sys_s, 2),
            "cpu_user_s": round(m.cpu_user_s, 2),
            "cpu_sys_s": round(m.cpu_sys_s, 2),
            "batch_calls": batch_total,
            "batch_calls_per_job": round(batch_total / jobs, 2),
            "batch_by_op": batch_ops,
            "s3_requests_submit": s3_submit,
            "s3_by_op_submit": s3_submit_ops,
            "s3_requests_job": s3_job,
            "s3_by_op_job": s3_job_ops,
            "other_calls_submit": _others(submit_calls),
            "job_side_counted": s3_job > 0,
            "misrouted_to_job_proxy": _others(job_calls),
            "leftover_jobs_terminated": leftovers,
            "command": line,
        }
        if m.status != "ok" or not row["correct"]:
            row["output_tail"] = output[-4000:]
        return row

    def _result(self, plugin: runs.Plugin, prefix: str, work: Path) -> str | None:
        """result.txt where the user finds it: the working directory, or S3 (storage)."""
        if not plugin.storage:
            path = work / wf.RESULT
            return path.read_text() if path.exists() else None
        bucket, key = _split(f"{prefix}/{wf.RESULT}")
        try:
            answer = self.s3.get_object(Bucket=bucket, Key=key)
        except self.s3.exceptions.NoSuchKey:
            return None
        return answer["Body"].read().decode()


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _others(calls: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in sorted(calls.items()) if k.partition(":")[0] not in ("batch", "s3")}


def _summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median over the rounds per (plugin, N)."""
    keys = sorted({(r["plugin"], r["n"]) for r in rows}, key=lambda k: (k[1], k[0]))
    out = []
    for plugin, n in keys:
        mine = [r for r in rows if (r["plugin"], r["n"]) == (plugin, n)]
        out.append(
            {
                "plugin": plugin,
                "n": n,
                "rounds": len(mine),
                "all_correct": all(r["correct"] for r in mine),
                "statuses": sorted({r["status"] for r in mine}),
                **{
                    f"median_{k}": statistics.median(r[k] for r in mine)
                    for k in (
                        "wall_s",
                        "cpu_s",
                        "batch_calls_per_job",
                        "s3_requests_submit",
                        "s3_requests_job",
                    )
                },
            }
        )
    return out


def _burst(
    args: argparse.Namespace, ctx: runs.Context, tmp: Path, job: runs.ProxyProcess
) -> dict[str, Any]:
    import _peer_burst

    return _peer_burst.run(ctx, tmp, job, args.submit_burst, BURST_SUBMIT_LIMIT)


# -- printing ---------------------------------------------------------------------------


COLUMNS = (
    ("plugin", 16, lambda r: r["plugin"]),
    ("N", 4, lambda r: str(r["n"])),
    ("rnd", 3, lambda r: str(r["round"])),
    ("status", 9, lambda r: r["status"]),
    ("correct", 7, lambda r: "yes" if r["correct"] else "NO"),
    ("wall s", 7, lambda r: f"{r['wall_s']:.1f}"),
    ("CPU s", 6, lambda r: f"{r['cpu_s']:.1f}"),
    ("Batch/job", 9, lambda r: f"{r['batch_calls_per_job']:.2f}"),
    ("S3 submit", 9, lambda r: str(r["s3_requests_submit"])),
    ("S3 jobs", 7, lambda r: str(r["s3_requests_job"]) if r["job_side_counted"] else "-"),
)


def _print_report(report: dict[str, Any]) -> None:
    if report["runs"]:
        _print_runs(report)
    burst = report.get("submit_burst")
    if burst:
        print(f"\nsubmission burst: {burst['summary']}")


def _print_runs(report: dict[str, Any]) -> None:
    print("\n" + "  ".join(f"{name:>{w}}" for name, w, _ in COLUMNS))
    for row in report["runs"]:
        print("  ".join(f"{get(row):>{w}}" for _, w, get in COLUMNS))
    print("\nBatch calls per Snakemake job, by operation (submitting side):")
    for row in report["runs"]:
        jobs = row["snakemake_jobs"]
        ops = ", ".join(f"{op} {c / jobs:.2f}" for op, c in row["batch_by_op"].items())
        print(f"  {row['plugin']:16} N={row['n']:<4} r{row['round']}: {ops}")
    print("\nS3 requests by operation (submitting side | jobs):")
    for row in report["runs"]:
        left = ", ".join(f"{op} {c}" for op, c in row["s3_by_op_submit"].items())
        right = ", ".join(f"{op} {c}" for op, c in row["s3_by_op_job"].items())
        print(f"  {row['plugin']:16} N={row['n']:<4} r{row['round']}: {left} | {right}")
    for row in report["runs"]:
        if row["other_calls_submit"] or row["misrouted_to_job_proxy"]:
            print(
                f"  {row['plugin']} N={row['n']}: other calls {row['other_calls_submit']}, "
                f"at the job proxy {row['misrouted_to_job_proxy'] or 'none'}"
            )
    if len({r["round"] for r in report["runs"]}) > 1:
        print("\nmedians over the rounds:")
        for s in report["summary"]:
            print(
                f"  {s['plugin']:16} N={s['n']:<4} correct {s['all_correct']}, wall "
                f"{s['median_wall_s']:.1f} s, CPU {s['median_cpu_s']:.1f} s, "
                f"{s['median_batch_calls_per_job']:.2f} Batch/job"
            )


if __name__ == "__main__":
    main()
