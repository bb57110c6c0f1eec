"""What the job image is built from: apt sources, pins, cache keys. No build, no podman."""

from __future__ import annotations

import importlib.metadata
import subprocess
from pathlib import Path

import pytest

from snakemake_executor_plugin_awsbatch.sandbox import debian, exports, image
from snakemake_executor_plugin_awsbatch.sandbox.errors import SandboxError

REPO = Path(__file__).resolve().parents[2]


def _apt_dir(tmp_path: Path, sources_list: str = "", **deb822: str) -> Path:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(sources_list)
    for name, text in deb822.items():
        (tmp_path / "sources.list.d" / f"{name}.sources").write_text(text)
    return tmp_path


def test_mirror_from_deb822_skips_security_and_disabled(tmp_path):
    apt = _apt_dir(
        tmp_path,
        a_security="Types: deb\nURIs: http://sec.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n",
        b_main="Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n"
        "Enabled: no\nTypes: deb\nURIs: http://off.example/debian\nSuites: bookworm\n\n"
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n",
    )
    assert debian.host_source(apt) == debian.Source("http://mirror.example/debian", "bookworm")


def test_mirror_from_one_line_sources_with_options(tmp_path):
    apt = _apt_dir(
        tmp_path,
        "# deb http://old.example/debian buster main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/ubuntu jammy main\n",
    )
    assert debian.host_source(apt) == debian.Source("http://mirror.example/ubuntu", "jammy")


def test_no_source_is_one_clear_error(tmp_path):
    with pytest.raises(SandboxError, match="no Debian/Ubuntu `deb` source"):
        debian.host_source(_apt_dir(tmp_path))


def test_job_image_installs_the_lock_at_this_machines_snakemake():
    spec = image.base_spec()
    assert spec.requirements_file == REPO / "containers" / "requirements.txt"
    for name in ("snakemake", "snakemake-storage-plugin-s3", "boto3", "hatchling"):
        assert any(pin.startswith(f"{name}==") for pin in spec.requirements), name
    assert f"snakemake=={importlib.metadata.version('snakemake')}" in spec.requirements
    # every dependency is pinned, not only the top-level ones
    assert any(pin.startswith("pyyaml==") for pin in spec.requirements)


def test_a_lock_with_another_snakemake_is_one_clear_error(tmp_path, monkeypatch):
    lock = tmp_path / "requirements.txt"
    lock.write_text("snakemake==9.0.0 \\\n    --hash=sha256:00\nboto3==1.0\n")
    monkeypatch.setenv(image.REQUIREMENTS_ENV, str(lock))
    installed = importlib.metadata.version("snakemake")
    with pytest.raises(SandboxError, match=f"snakemake 9.0.0 .*this machine runs {installed}"):
        image.base_spec()


def test_an_unpinned_requirement_is_refused(tmp_path, monkeypatch):
    lock = tmp_path / "requirements.txt"
    lock.write_text("boto3>=1.0\n")
    monkeypatch.setenv(image.REQUIREMENTS_ENV, str(lock))
    with pytest.raises(SandboxError, match=r"'boto3>=1\.0' is not pinned"):
        image.base_spec()


def test_source_digest_follows_content_not_bytecode(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    before = list(image._tree_digests(tmp_path))
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    assert list(image._tree_digests(tmp_path)) == before
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    assert list(image._tree_digests(tmp_path)) != before


def test_base_tag_changes_with_packages():
    source = debian.Source("http://mirror.example/debian", "bookworm")
    one = image.BaseSpec(source, ("bwa",), ("snakemake==9.0.0",), "3.11")
    two = image.BaseSpec(source, ("bwa", "samtools"), ("snakemake==9.0.0",), "3.11")
    assert one.tag != two.tag
    assert one.tag.startswith(image.BASE_REPOSITORY + ":")


def test_export_lines_survive_the_shell():
    variables = {"A_QUOTE": "it's $HOME `x`", "PLAIN": "s3://bucket/prefix"}
    script = "\n".join([*exports.shell_lines(variables), 'printf "%s\\n" "$A_QUOTE" "$PLAIN"'])
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["it's $HOME `x`", "s3://bucket/prefix"]
