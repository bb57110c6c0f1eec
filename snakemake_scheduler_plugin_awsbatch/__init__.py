"""`--scheduler awsbatch`: the scheduler of the Snakemake inside an awsbatch job.

Snakemake finds scheduler plugins by their module's name; the scheduler itself, with the
reason it exists, is snakemake_executor_plugin_awsbatch/jobside/plan_check.py.
"""

from snakemake_executor_plugin_awsbatch.jobside.plan_check import Scheduler

__all__ = ["Scheduler"]
