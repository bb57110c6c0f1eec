"""The settings through Snakemake's real command-line parser and plugin registry."""

import subprocess
import sys
from pathlib import Path

from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry


def test_plugin_registers_with_prefixed_flags_and_env_vars() -> None:
    plugin = ExecutorPluginRegistry().get_plugin("awsbatch")
    info = {i["name"]: i for i in plugin.get_settings_info()}
    assert info["default_queue"]["cliarg"] == "--awsbatch-default-queue"
    assert info["default_queue"]["env_var"] == "SNAKEMAKE_AWSBATCH_DEFAULT_QUEUE"
    assert info["default_queue"]["default"] == "default"
    assert all(i["env_var"] for i in info.values())


PARSE = """
import sys
from pathlib import Path
from snakemake.cli import parse_args
from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry
from snakemake_executor_plugin_awsbatch.config import load_config
parser, args = parse_args(sys.argv[1:])
c = load_config(ExecutorPluginRegistry().get_plugin("awsbatch").get_settings(args))
print(repr((c.default_queue, c.tags, c.spot_retries, sorted(c.priority_rules), c.image)))
"""


def test_settings_parse_from_cli_and_environment(tmp_path) -> None:
    """Real argv through Snakemake's parser into the settings dataclass."""
    argv = [
        *("--executor", "awsbatch", "--awsbatch-default-queue", "spotq"),
        *("--awsbatch-tags", "a=1", "b=2", "--awsbatch-spot-retries", "4"),
    ]
    env = {
        "SNAKEMAKE_AWSBATCH_IMAGE": "repo/img:1",
        # A list setting from the environment is one string.
        "SNAKEMAKE_AWSBATCH_PRIORITY_RULES": "call report",
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run(
        [sys.executable, "-c", PARSE, *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    ).stdout
    expected = ("spotq", {"a": "1", "b": "2"}, 4, ["call", "report"], "repo/img:1")
    assert out.strip().splitlines()[-1] == repr(expected)


def test_help_lists_every_setting(tmp_path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    ).stdout
    plugin = ExecutorPluginRegistry().get_plugin("awsbatch")
    for setting in plugin.get_settings_info():
        assert setting["cliarg"] in out


def test_every_setting_is_documented_with_its_default() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    rows = {
        line.split("|")[1].strip(" `"): line
        for line in docs.splitlines()
        if line.startswith("| `--awsbatch-")
    }
    for setting in ExecutorPluginRegistry().get_plugin("awsbatch").get_settings_info():
        row = rows.get(setting["cliarg"])
        assert row, f"{setting['cliarg']} is not in docs/configuration.md"
        assert setting["env_var"] in row
        if setting["default"] is not None:
            assert f"`{setting['default']}`" in row, f"{setting['cliarg']}: default not documented"


def test_dry_run_needs_no_aws(tmp_path) -> None:
    """`-n` makes no AWS call: no credentials, no region, no image, and an endpoint that
    refuses every connection still give a dry run that lists the job. Since Snakemake 9.27
    a dry run checks the command line against the executor, which needs `--jobs`."""
    (tmp_path / "Snakefile").write_text(
        'rule hello:\n    output: "hello.txt"\n    shell: "echo hi > {output}"\n'
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # the discard port: nothing listens
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    command = [sys.executable, "-m", "snakemake", "-n", "--executor", "awsbatch"]

    def dry_run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, *args], capture_output=True, text=True, env=env, cwd=tmp_path
        )

    done = dry_run("--jobs", "4")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "This was a dry-run" in done.stdout + done.stderr
    assert "hello" in done.stdout
    without_jobs = dry_run()
    assert without_jobs.returncode == 1
    assert "maximum number of parallel jobs" in without_jobs.stdout + without_jobs.stderr
