"""Snakemake executor plugin for AWS Batch (`snakemake --executor awsbatch`).

Snakemake finds the plugin by this module's name; it needs `common_settings`,
`Executor` and `ExecutorSettings` here. `Executor` is imported on first use: the job-side
runner and the transfer layer live in this package too, and a job should not pay for
importing the submitting side when it starts.
"""

import os
from typing import TYPE_CHECKING, Any

from snakemake_interface_executor_plugins.settings import CommonSettings

from snakemake_executor_plugin_awsbatch.settings import ExecutorSettings

if TYPE_CHECKING:
    from snakemake_executor_plugin_awsbatch.executor import Executor

__all__ = ["Executor", "ExecutorSettings", "common_settings"]

common_settings = CommonSettings(
    non_local_exec=True,
    # Jobs share no file system with the submitting machine.
    implies_no_shared_fs=True,
    # The plugin ships the sources (and, without a storage provider, the inputs and
    # outputs) itself through S3, with a manifest per job: see staging.py.
    job_deploy_sources=False,
    can_transfer_local_files=True,
    pass_default_storage_provider_args=True,
    pass_default_resources_args=True,
    # Environment variables travel in containerOverrides (filtered for secrets),
    # not as `export` lines in the command.
    pass_envvar_declarations_to_cmd=False,
    # The job image carries the storage plugins, pinned; never pip-install per job.
    auto_deploy_default_storage_provider=False,
    init_seconds_before_status_checks=5,
)


def __getattr__(name: str) -> Any:
    if name == "Executor":
        if os.environ.get("AWSBATCH_JOB_SIDE"):  # inside a job: see jobside/in_job.py
            from snakemake_executor_plugin_awsbatch.jobside import in_job

            return in_job.Executor
        from snakemake_executor_plugin_awsbatch.executor import Executor

        return Executor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
