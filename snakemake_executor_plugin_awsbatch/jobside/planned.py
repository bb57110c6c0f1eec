"""What the submitting side planned for a job, file by file, and how a job compares.

Both sides describe a Snakemake job the same way (`planned_job`): its rule and, sorted,
its inputs, outputs, logs and benchmark, a file in storage by its query (s3://...), any
other by its path relative to the working directory. The submitting side puts the plan
of each job into its manifest; the runner writes it to a file (`Plan`) for the job's
Snakemake, whose scheduler (plan_check.py) compares every job it is about to start.

Standard library only: the runner imports it, and its start-up time counts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

KINDS = ("input", "output", "log", "benchmark")
# The file the runner writes for the job's Snakemake (the variable names it).
PLAN_ENV = "AWSBATCH_PLAN"
# The job's Snakemake's --scheduler (plan_check.py; found in the package
# snakemake_scheduler_plugin_awsbatch).
SCHEDULER = "awsbatch"


def planned_job(job: Any) -> dict[str, Any]:
    """What one Snakemake job reads and writes, as both sides compare it: its rule, and
    each kind of file as a sorted list (a file in storage by its query, s3://...)."""
    benchmark = getattr(job, "benchmark", None)
    return {
        "rule": job.rule.name,
        "input": _names(job.input),
        "output": _names(job.output),
        "log": _names(job.log),
        "benchmark": _names([benchmark] if benchmark else []),
    }


def planned_jobs(job: Any) -> list[dict[str, Any]]:
    """The plan of a job: one entry per rule it runs (the members of a group job)."""
    members = list(job.jobs) if job.is_group() else [job]
    return [planned_job(member) for member in members]


def _names(files: Iterable[Any]) -> list[str]:
    return sorted(_name(f) for f in files)


def _name(f: Any) -> str:
    if getattr(f, "is_storage", False):
        return str(f.storage_object.query)
    return str(f)


def difference(planned: Sequence[Mapping[str, Any]], job: Any) -> str | None:
    """None if the job is one of the planned ones, file for file; else what differs."""
    here = planned_job(job)
    same_rule = [p for p in planned if p["rule"] == here["rule"]]
    if not same_rule:
        rules = ", ".join(sorted({p["rule"] for p in planned}))
        return f"it would run rule {here['rule']}, the submitting side planned {rules}"
    for candidate in same_rule:
        if candidate == here:
            return None
    closest = min(same_rule, key=lambda p: _distance(p, here))
    parts = []
    for kind in KINDS:
        missing = sorted(set(closest[kind]) - set(here[kind]))
        extra = sorted(set(here[kind]) - set(closest[kind]))
        if missing:
            parts.append(f"{kind} planned but not here: {_shown(missing)}")
        if extra:
            parts.append(f"{kind} here but not planned: {_shown(extra)}")
    return f"rule {here['rule']}: " + "; ".join(parts or ["the files differ in number"])


def _distance(planned: Mapping[str, Any], here: Mapping[str, Any]) -> int:
    return sum(len(set(planned[k]) ^ set(here[k])) for k in KINDS)


def _shown(names: list[str], most: int = 5) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


class Plan:
    """The plan file: the job's working directory, its planned jobs, where a difference
    is written for the runner."""

    def __init__(self, path: Path) -> None:
        data = json.loads(path.read_text())
        self.workdir = Path(data["workdir"])
        self.jobs: list[dict[str, Any]] = data["jobs"]
        self.mismatch_file = Path(data["mismatch_file"])

    @staticmethod
    def write(
        path: Path, workdir: Path, jobs: Sequence[Mapping[str, Any]], mismatch_file: Path
    ) -> None:
        body = {"workdir": str(workdir), "jobs": list(jobs), "mismatch_file": str(mismatch_file)}
        path.write_text(json.dumps(body))

    def mismatch(self, jobs: Iterable[Any]) -> str | None:
        """The line naming how what Snakemake is about to run differs from the plan
        (written where the runner reads it), or None."""
        problem = None
        if Path.cwd().resolve() != self.workdir.resolve():
            problem = (
                f"its Snakemake runs in {Path.cwd()}, not in the job's directory {self.workdir}"
            )
        for job in jobs:
            for member in list(job.jobs) if job.is_group() else [job]:
                problem = problem or difference(self.jobs, member)
        if problem is None:
            return None
        line = f"the job's Snakemake planned otherwise than the submitting side: {problem}"
        self.mismatch_file.write_text(line + "\n")
        return line
