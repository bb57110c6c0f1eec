"""The one exception type the plugin raises for anything the user must fix."""

from snakemake_interface_common.exceptions import ApiError


class ConfigError(ApiError):
    """A bad setting, resource or S3 location: the message names it and says how to fix it.

    Snakemake prints an ApiError as one line, `Error: <message>`; a WorkflowError raised
    in the plugin would come with the plugin's stack frames, which only hide the message.
    """
