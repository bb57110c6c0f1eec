"""A local stand-in for AWS Batch: moto in server mode, jobs run as podman containers.

`python -m snakemake_executor_plugin_awsbatch.sandbox up|env|run|down|status`; see
docs/sandbox.md. The plugin knows nothing about it: the sandbox reaches the plugin only
through standard AWS configuration (`AWS_ENDPOINT_URL`, region, credentials) and the
plugin's public `SNAKEMAKE_AWSBATCH_*` settings.
"""
