"""The job's Snakemake command: Snakemake's own, made to run in the job's directory.

Snakemake formats the command of a remote job for a machine that sees this one's files.
A Batch job sees none of them: it runs in a private scratch directory that mirrors the
working directory. So the command names the Snakefile relative to the working directory
(Snakemake makes it absolute under `--directory`, or when its Python API runs a
workflow), and loses `--directory`, which would send the job's Snakemake to this
machine's path on the job's: it would create it and run the rule there, outside scratch.
"""

from __future__ import annotations

import os
from pathlib import Path

from snakemake_interface_executor_plugins.utils import format_cli_arg


def without_directory(command: str, workdir: str | Path | None) -> str:
    """The command without the `--directory <workdir>` Snakemake put into it."""
    given = format_cli_arg("--directory", workdir)
    return command.replace(f" {given}", "", 1) if given else command


def relative_snakefile(snakefile: str | Path, workdir: Path) -> str:
    """The Snakefile's path as the job's copy of the sources has it."""
    return os.path.relpath(os.path.abspath(snakefile), workdir)
