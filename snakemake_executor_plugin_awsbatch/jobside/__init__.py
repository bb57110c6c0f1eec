"""The job-side runner: `python -m snakemake_executor_plugin_awsbatch.jobside s3://.../manifest.json`.

Inside the Batch container it makes a private scratch directory, fetches and verifies the
job's sources and inputs, runs the job's command, uploads what the command wrote, writes a
report, and always removes the scratch directory. See docs/staging.md.

This module imports nothing: the runner's start-up time matters (no snakemake import).
"""
