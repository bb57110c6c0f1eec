"""The cost of the plan check in a job: the job's Snakemake with `--scheduler greedy`
(as before) against `--scheduler awsbatch` (the plan check, then greedy).

    .venv/bin/python benchmarks/plan_check.py [--rounds 15] [--inputs 1 1000]

For each input count, a rule reading that many files, run as the plugin runs a job's
Snakemake (remote mode, one target job, the flags of executor.additional_general_args),
in a directory of its own, without AWS. The two schedulers alternate, so neither always
meets a warmer machine. Reports the medians of the process's CPU time (user + system)
and wall time, and their difference: what the check adds to each job. Also times the
check alone, in one process, on the resolved job (`Plan.mismatch`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from snakemake_executor_plugin_awsbatch.jobside.planned import PLAN_ENV, Plan

COMMAND = [
    sys.executable,
    "-m",
    "snakemake",
    "--snakefile",
    "Snakefile",
    "--target-jobs",
    "aggregate:",
    "--allowed-rules",
    "aggregate",
    "--cores",
    "1",
    "--force",
    "--target-files-omit-workdir-adjustment",
    "--nocolor",
    "--notemp",
    "--no-hooks",
    "--nolock",
    "--ignore-incomplete",
    "--mode",
    "remote",
    "--quiet",
    "progress",
    "rules",
    "host",
    "--max-jobs-per-timespan",
    "100/0s",
    "--scheduler",
]
SNAKEFILE = """
rule aggregate:
    input: expand("in/{{i}}.txt", i=range({n}))
    output: "out.txt"
    shell: "cat {{input}} > {{output}}"
"""


def workflow(root: Path, inputs: int) -> Path:
    workdir = root / f"n{inputs}"
    (workdir / "in").mkdir(parents=True)
    (workdir / "Snakefile").write_text(SNAKEFILE.format(n=inputs))
    for i in range(inputs):
        (workdir / "in" / f"{i}.txt").write_text(f"{i}\n")
    names = sorted(f"in/{i}.txt" for i in range(inputs))
    plan = {"rule": "aggregate", "input": names, "output": ["out.txt"], "log": [], "benchmark": []}
    Plan.write(root / f"plan-{inputs}.json", workdir, [plan], root / f"mismatch-{inputs}.txt")
    return workdir


def one_run(workdir: Path, scheduler: str, plan: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one job's Snakemake."""
    (workdir / "out.txt").unlink(missing_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [*COMMAND, scheduler],
        cwd=workdir,
        env={**os.environ, PLAN_ENV: str(plan)},
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def check_alone(workdir: Path, plan: Path, repeat: int = 200) -> float:
    """Seconds of one Plan.mismatch on the resolved job (median of `repeat`)."""
    from snakemake import api
    from snakemake.settings import types as settings

    here = Path.cwd()
    os.chdir(workdir)
    try:
        with api.SnakemakeApi(settings.OutputSettings(quiet={settings.Quietness.ALL})) as sm:
            workflow_api = sm.workflow(
                resource_settings=settings.ResourceSettings(cores=1),
                snakefile=Path("Snakefile"),
                workdir=workdir,
            )
            # Snakemake's own steps before it schedules (its API has no public way to them).
            snakemake_workflow = workflow_api.dag().workflow_api._workflow
            snakemake_workflow._prepare_dag(
                forceall=True, ignore_incomplete=True, lock_warn_only=True
            )
            snakemake_workflow._build_dag()
            (job,) = [j for j in snakemake_workflow.dag.jobs if j.rule.name == "aggregate"]
            checker = Plan(plan)
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                assert checker.mismatch([job]) is None
                times.append(time.perf_counter() - started)
    finally:
        os.chdir(here)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--inputs", type=int, nargs="+", default=[1, 1000])
    p.add_argument("--json", default="benchmarks/plan-check-results.json", help="'' for none")
    args = p.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="plan-check-") as tmp:
        root = Path(tmp)
        for inputs in args.inputs:
            workdir, plan = workflow(root, inputs), root / f"plan-{inputs}.json"
            runs: dict[str, list[tuple[float, float]]] = {"greedy": [], "awsbatch": []}
            for round_no in range(args.rounds):
                order = ["greedy", "awsbatch"] if round_no % 2 == 0 else ["awsbatch", "greedy"]
                for scheduler in order:
                    runs[scheduler].append(one_run(workdir, scheduler, plan))
            row = {
                f"{name} {kind}": statistics.median(r[i] for r in values)
                for name, values in runs.items()
                for i, kind in enumerate(("cpu", "wall"))
            }
            row["check alone"] = check_alone(workdir, plan)
            results[f"{inputs} inputs"] = row
            print(
                f"{inputs:5} inputs, median of {args.rounds}: "
                f"CPU greedy {row['greedy cpu']:.3f} s, awsbatch {row['awsbatch cpu']:.3f} s "
                f"(+{(row['awsbatch cpu'] - row['greedy cpu']) * 1000:.0f} ms); wall greedy "
                f"{row['greedy wall']:.3f} s, awsbatch {row['awsbatch wall']:.3f} s "
                f"(+{(row['awsbatch wall'] - row['greedy wall']) * 1000:.0f} ms); "
                f"the check alone {row['check alone'] * 1000:.2f} ms"
            )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"command": " ".join(sys.argv), "rounds": args.rounds, **results}, indent=1)
        )


if __name__ == "__main__":
    main()
