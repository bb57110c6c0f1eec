"""Bad situations the sandbox command must handle with one clear line and nothing left running.

None of these starts a sandbox, so they take about a second each.
"""

from __future__ import annotations

import os
import socket
import sys

from sandbox_helpers import cli, processes_mentioning

from snakemake_executor_plugin_awsbatch.sandbox import environment


def _one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_taken_port_is_one_error_and_starts_nothing(tmp_path):
    state_dir = tmp_path / "state"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("up", "--state-dir", str(state_dir), "--port", str(port))

    assert result.returncode == 1
    line = _one_error_line(result)
    assert f"port {port}" in line and "already in use" in line
    assert not (state_dir / "state.json").exists()
    assert processes_mentioning(str(state_dir)) == []


def test_missing_podman_names_the_package_and_the_command(tmp_path):
    # A PATH with python only: no podman (runc and debootstrap live in sbin, which the
    # sandbox also searches).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = {**os.environ, "PATH": str(bin_dir)}

    result = cli("up", "--state-dir", str(tmp_path / "state"), env=env)

    assert result.returncode == 1
    line = _one_error_line(result)
    assert "podman" in line
    assert "apt-get install -y podman" in line


def test_down_when_nothing_runs_says_so(tmp_path):
    result = cli("down", "--state-dir", str(tmp_path))

    assert result.returncode == 0
    assert "nothing runs" in result.stdout


def test_status_when_nothing_runs_exits_3(tmp_path):
    result = cli("status", "--state-dir", str(tmp_path))

    assert result.returncode == 3
    assert "not running" in result.stdout


def test_env_when_nothing_runs_is_one_error(tmp_path):
    result = cli("env", "--state-dir", str(tmp_path))

    assert result.returncode == 1
    assert "no sandbox runs" in _one_error_line(result)
    assert result.stdout == ""


def test_run_without_a_command_is_one_error(tmp_path):
    result = cli("run", "--state-dir", str(tmp_path), "--")

    assert result.returncode == 1
    assert "run needs a command" in _one_error_line(result)


def test_unknown_option_is_one_error(tmp_path):
    result = cli("up", "--no-such-option")

    assert result.returncode == 2
    assert "unrecognized arguments" in _one_error_line(result)


def test_state_dir_too_long_for_a_socket_is_one_error(tmp_path):
    result = cli("status", "--state-dir", str(tmp_path / ("x" * 120)))

    assert result.returncode == 1
    assert "too long" in _one_error_line(result)


def test_missing_templates_is_one_error_naming_the_path_and_starts_nothing(tmp_path):
    state_dir, nowhere = tmp_path / "state", tmp_path / "no-templates"
    env = {**os.environ, environment.TEMPLATES_ENV: str(nowhere)}

    result = cli("up", "--state-dir", str(state_dir), env=env)

    assert result.returncode == 1
    line = _one_error_line(result)
    assert f"no CloudFormation templates at {nowhere}" in line
    assert "pip install -e ." in line and environment.TEMPLATES_ENV in line
    assert not (state_dir / "state.json").exists()
    assert processes_mentioning(str(state_dir)) == []
