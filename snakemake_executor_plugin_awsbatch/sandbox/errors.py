"""The one exception the sandbox raises for anything the user must fix."""


class SandboxError(Exception):
    """Printed as one line (no traceback) by the command line, which then exits non-zero."""
