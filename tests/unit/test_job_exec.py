"""The job's command runs in the job's directory, whatever directory Snakemake was given."""

from __future__ import annotations

from pathlib import Path

from snakemake_interface_executor_plugins.utils import format_cli_arg, join_cli_args

from snakemake_executor_plugin_awsbatch import job_exec


def test_the_directory_snakemake_was_given_is_left_out_however_quoted():
    workdir = "/home/me/my runs/wf"
    command = join_cli_args(
        [
            "python -m snakemake",
            "--target-jobs 'a:'",
            format_cli_arg("--directory", workdir),
            "--mode remote",
        ]
    )
    assert workdir in command
    assert job_exec.without_directory(command, workdir) == (
        "python -m snakemake --target-jobs 'a:' --mode remote"
    )


def test_a_command_without_a_directory_stays_as_it_is():
    command = "python -m snakemake --target-jobs 'a:' --mode remote"
    assert job_exec.without_directory(command, None) == command
    assert job_exec.without_directory(command, "/elsewhere") == command


def test_the_snakefile_is_named_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    workflow = tmp_path / "wf"
    assert job_exec.relative_snakefile(workflow / "Snakefile", workflow) == "Snakefile"
    assert job_exec.relative_snakefile("wf/workflow/Snakefile", workflow) == "workflow/Snakefile"
    assert job_exec.relative_snakefile(Path("Snakefile"), tmp_path) == "Snakefile"
