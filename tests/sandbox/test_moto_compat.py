"""The sandbox checks the installed moto before it starts anything."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from snakemake_executor_plugin_awsbatch.sandbox import moto_compat, moto_server
from snakemake_executor_plugin_awsbatch.sandbox.errors import SandboxError

REPO = Path(__file__).resolve().parents[2]


def test_the_installed_moto_has_everything_the_sandbox_patches():
    moto_compat.require()


def test_the_supported_range_is_the_sandbox_extras():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    (moto,) = [
        r for r in map(Requirement, extras["optional-dependencies"]["sandbox"]) if r.name == "moto"
    ]
    assert moto_compat.supported_range() == ",".join(
        sorted(map(str, moto.specifier), key=lambda s: s[0] != ">")
    )
    assert importlib.metadata.version("moto") in moto.specifier


def test_a_moto_without_a_patched_name_is_one_line_naming_both_versions(monkeypatch):
    monkeypatch.setitem(
        moto_compat._NEEDED, "moto.batch.responses:BatchResponse", ("submitjob", "submit_job")
    )
    with pytest.raises(SandboxError) as raised:
        moto_compat.require()
    message = str(raised.value)
    assert "\n" not in message
    assert f"moto {importlib.metadata.version('moto')}" in message
    assert "moto.batch.responses.BatchResponse.submitjob" in message
    assert f"pip install 'moto[server]{moto_compat.supported_range()}'" in message


def test_the_moto_server_stops_with_that_line_not_a_traceback(tmp_path):
    # A moto whose Batch responses lack what the sandbox wraps (as 5.2.5 lacked submit_job).
    shadow = tmp_path / "sitecustomize.py"
    shadow.write_text("import moto.batch.responses as r\ndel r.BatchResponse.submit_job\n")
    done = subprocess.run(
        [sys.executable, "-m", moto_server.MODULE, "--port", "1", "--label", "x"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], (
        "more than one line (a traceback?)"
    )
    assert "does not work with moto" in done.stderr
    assert "BatchResponse.submit_job" in done.stderr
