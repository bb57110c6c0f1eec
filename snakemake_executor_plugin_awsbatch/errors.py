"""The one exception type the plugin raises for anything the user must fix."""

from snakemake_interface_common.exceptions import WorkflowError


class ConfigError(WorkflowError):
    """A bad setting or resource: the message names it and says how to fix it."""
