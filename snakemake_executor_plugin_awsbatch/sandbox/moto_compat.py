"""Which moto the sandbox runs on: the supported releases, and what it patches of them.

The sandbox patches moto's internals (moto_patches.py, multinode.py), which moto renames
without notice: 5.2.6 renamed BatchResponse's handlers (`submitjob` became `submit_job`),
5.1 lacked `MotoRequestHandler`; the sandbox extra allows only the releases it was tested
with. Before anything starts, `require()` checks that the
installed moto has every name the sandbox uses, and otherwise stops with one line
naming the installed moto and the supported range (the sandbox extra's, read from this
plugin's metadata), never a traceback from inside moto.
"""

from __future__ import annotations

import importlib
import importlib.metadata

from packaging.requirements import InvalidRequirement, Requirement

from snakemake_executor_plugin_awsbatch.sandbox.errors import SandboxError

DISTRIBUTION = "snakemake-executor-plugin-awsbatch"
# When the plugin runs from a tree that was never installed (no metadata).
FALLBACK_RANGE = ">=5.2.6,<5.2.7"

# Every module attribute and class member the sandbox reads or replaces.
_NEEDED: dict[str, tuple[str, ...]] = {
    "moto.batch.models": ("Job", "BatchBackend", "datetime2int_milliseconds"),
    "moto.batch.models:Job": (
        "__init__",
        "run",
        "describe",
        "describe_short",
        "_mark_stopped",
        "_stop_attempt",
        "_container_details",
        "_get_container_property",
        "_get_attempt_duration",
    ),
    "moto.batch.models:BatchBackend": (
        "submit_job",
        "list_jobs",
        "describe_jobs",
        "terminate_job",
        "cancel_job",
        "get_job_by_id",
        "get_job_definition",
    ),
    # moto 5.2.6 renamed these from `submitjob`, `listjobs`.
    "moto.batch.responses:BatchResponse": ("submit_job", "list_jobs", "_get_param"),
    "moto.batch.exceptions": ("ClientException",),
    "moto.batch.utils": ("JobStatus",),
    "moto.moto_api._internal.managed_state_model": ("ManagedState",),
    "moto.moto_server.werkzeug_app": (
        "DomainDispatcherApplication",
        "MotoRequestHandler",
        "create_backend_app",
    ),
    "moto.core.parse": ("default_timestamp_parser",),
    "moto.core.utils": ("unix_time_millis",),
}


def require() -> None:
    """Raise SandboxError (one line) unless the installed moto has what the sandbox uses."""
    try:
        missing = _missing()
    except ImportError as err:
        raise SandboxError(_unsupported(str(err))) from None
    if missing:
        raise SandboxError(_unsupported(f"it lacks {', '.join(missing)}"))


def supported_range() -> str:
    """The sandbox extra's moto range, as this plugin's metadata states it."""
    try:
        requirements = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return FALLBACK_RANGE
    for text in requirements:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        marker = requirement.marker
        if requirement.name == "moto" and marker and marker.evaluate({"extra": "sandbox"}):
            # Lower bound first: ">=5.2.5,<5.2.7".
            return ",".join(sorted(map(str, requirement.specifier), key=lambda s: s[0] != ">"))
    return FALLBACK_RANGE


def _missing() -> list[str]:
    missing = []
    for where, names in _NEEDED.items():
        module_name, _, class_name = where.partition(":")
        owner = importlib.import_module(module_name)
        if class_name:
            owner = getattr(owner, class_name)
        label = f"{module_name}.{class_name}" if class_name else module_name
        missing += [f"{label}.{name}" for name in names if not hasattr(owner, name)]
    return missing


def _unsupported(why: str) -> str:
    try:
        installed = f"moto {importlib.metadata.version('moto')}"
    except importlib.metadata.PackageNotFoundError:
        installed = "no moto"
    wanted = supported_range()
    return (
        f"the sandbox does not work with {installed} ({why}); it supports moto{wanted}: "
        f"pip install 'moto[server]{wanted}'"
    )
