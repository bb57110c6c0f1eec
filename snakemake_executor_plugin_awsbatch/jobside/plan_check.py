"""The job's Snakemake runs exactly what the submitting side planned, or nothing.

Inside a Batch job, Snakemake builds its DAG again from the Snakefile: it evaluates input
functions anew, on the job's machine, in the job's directory. Where that differs from
what the submitting side saw (a checkpoint's directory that is not there, another
working directory), the job would run the rule with other inputs or outputs and could
even succeed, with a wrong result.

So the job's Snakemake is started with `--scheduler awsbatch`: this scheduler (the
`snakemake_scheduler_plugin_awsbatch` package makes Snakemake find it) checks every job
Snakemake is about to start against the plan, the files the submitting side planned for
each rule of the job (the manifest's `plan`, written to a file by the runner), and the
working directory against the job's own. On any difference it writes one line naming it
where the runner reads it, and stops Snakemake before the rule's command starts.
Otherwise it selects jobs as Snakemake's greedy scheduler does.

Snakemake imports this module wherever it starts (it collects every scheduler plugin),
so it imports nothing beyond Snakemake's own modules and the standard library.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from snakemake.scheduling.greedy import Scheduler as GreedyScheduler
from snakemake.scheduling.greedy import SchedulerSettings as GreedySettings
from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_scheduler_plugins.base import SchedulerBase

from .planned import PLAN_ENV, SCHEDULER, Plan


class Scheduler(SchedulerBase):
    """Snakemake's greedy selection, after the plan check."""

    def __post_init__(self) -> None:
        planned = os.environ.get(PLAN_ENV)
        if not planned:
            raise WorkflowError(
                f"--scheduler {SCHEDULER} runs inside AWS Batch jobs of the awsbatch executor only "
                f"({PLAN_ENV} is not set); choose another --scheduler"
            )
        self.plan = Plan(Path(planned))
        self.greedy = GreedyScheduler(self.dag, GreedySettings(), self.logger)

    def dag_updated(self) -> None:
        self.greedy.dag_updated()

    def select_jobs(
        self,
        selectable_jobs: Sequence[Any],
        remaining_jobs: Sequence[Any],
        available_resources: Mapping[str, int | str],
        input_sizes: dict[Any, int],
    ) -> Sequence[Any] | None:
        mismatch = self.plan.mismatch(selectable_jobs)
        if mismatch:
            raise WorkflowError(f"{mismatch}; the rule's command was not run")
        return self.greedy.select_jobs(
            selectable_jobs, remaining_jobs, available_resources, input_sizes
        )
