"""cfn-lint: no error and no warning on any template, nested wiring included."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cloudformation.conftest import ALL_TEMPLATES, ROOT, TEMPLATES


def cfn_lint(*paths: Path) -> subprocess.CompletedProcess[str]:
    """cfn-lint reads a nested template (for its outputs) only below the working directory,
    so it runs in the templates' directory."""
    script = Path(sys.executable).parent / "cfn-lint"
    command = str(script) if script.exists() else shutil.which("cfn-lint")
    if command is None:
        pytest.fail("cfn-lint is not installed; run `make venv` (it is in the test extra)")
    return subprocess.run(
        [command, "--format", "parseable", *(p.name for p in paths)],
        cwd=paths[0].parent,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_every_template_is_clean() -> None:
    assert len(ALL_TEMPLATES) == 7, [p.name for p in ALL_TEMPLATES]
    result = cfn_lint(*ALL_TEMPLATES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


@pytest.mark.parametrize(
    ("good", "bad", "rule"),
    [
        # an output the nested template does not declare
        ("Iam.Outputs.InstanceProfileArn", "Iam.Outputs.InstanceProfile", "E1010"),
        # a parameter the nested template does not declare
        ("        CreateServiceRole: !Ref", "        CreateServiceRol: !Ref", "E3043"),
    ],
)
def test_nested_wiring_is_checked(tmp_path: Path, good: str, bad: str, rule: str) -> None:
    """The local TemplateURLs make cfn-lint read the nested templates, so a wiring mistake in
    the root is an error (with S3 URLs it would pass silently)."""
    for path in TEMPLATES.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    root = tmp_path / ROOT.name
    text = root.read_text()
    assert text.count(good) == 1
    root.write_text(text.replace(good, bad))
    result = cfn_lint(root)
    assert result.returncode != 0
    assert f":{rule}:" in result.stdout, result.stdout
