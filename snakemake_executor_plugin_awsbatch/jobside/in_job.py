"""What `snakemake_executor_plugin_awsbatch.Executor` is inside a Batch job.

Snakemake imports every installed executor plugin when it starts and checks that its
`Executor` is an executor class, even where it will never use it: the job's own
Snakemake runs its rule with the local executor. Importing the real executor there
(boto3 and the whole submitting side) cost each job about 0.45 s of CPU, so the runner
marks the job's environment and the plugin hands over this class instead.
"""

from __future__ import annotations

from typing import Any, NoReturn

from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor

# Set by the runner for the command it starts (runner.py).
MARKER = "AWSBATCH_JOB_SIDE"


class Executor(RemoteExecutor):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _refuse()

    def run_job(self, job: Any) -> None:
        _refuse()

    async def check_active_jobs(self, active_jobs: Any) -> Any:  # pragma: no cover
        _refuse()

    def cancel_jobs(self, active_jobs: Any) -> None:
        _refuse()


def _refuse() -> NoReturn:
    raise RuntimeError(
        f"the awsbatch executor cannot submit jobs from inside a Batch job ({MARKER} is set)"
    )
