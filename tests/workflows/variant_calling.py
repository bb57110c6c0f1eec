"""Helpers to run the example pipeline (workflows/variant-calling) and compare two runs.

Shared by the local tests here and the sandbox test, which runs the same pipeline with
`--executor awsbatch` and compares its outputs with a local run's.
"""

import hashlib
import importlib.util
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
WORKFLOW_DIR = REPO / "workflows" / "variant-calling"
PROFILES_DIR = REPO / "workflows" / "profiles"
TOOLS = ("bwa", "samtools", "bcftools")

# Files two runs must agree on byte for byte, relative to the working directory. BAMs and
# VCFs are left out on purpose: their headers record command lines (with absolute paths)
# and tool versions. calls.tsv holds every call (position, alleles, QUAL, depth, each
# sample's genotype) without a header from the tools; the truth shows both runs simulated
# the same data; the report shows they scored the same.
COMPARED_FILES = (
    "resources/truth.vcf",
    "results/calls/calls.tsv",
    "results/report/summary.tsv",
    "results/report/summary.json",
    "results/report/variants.tsv",
)


def load_script(name: str) -> ModuleType:
    """Import one of the pipeline's scripts (they run as `script:`, not as a package)."""
    path = WORKFLOW_DIR / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"variant_calling_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def copy_workflow(dest: Path) -> Path:
    """A clean copy of the workflow's sources (never the outputs of an earlier run)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(WORKFLOW_DIR / "Snakefile", dest / "Snakefile")
    for folder in ("config", "scripts"):
        shutil.copytree(
            WORKFLOW_DIR / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    return dest


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def run_snakemake(
    workdir: Path, profile: str, *args: str, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run Snakemake in `workdir` with a profile from workflows/profiles; never raises."""
    command = [sys.executable, "-m", "snakemake", "--profile", str(PROFILES_DIR / profile), *args]
    return subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, timeout=timeout, check=False
    )


def run_local_pipeline(dest: Path) -> Path:
    """A complete `--profile local` run in a fresh copy under dest; -> its working directory.

    Raises AssertionError if a tool is missing or the run fails, so a caller's fixture fails
    (not skips) the tests that need it: `make test` installs the tools.
    """
    missing = missing_tools()
    assert not missing, f"missing {' '.join(missing)}: apt-get install {' '.join(missing)}"
    workdir = copy_workflow(dest)
    started = time.monotonic()
    result = run_snakemake(workdir, "local")
    assert result.returncode == 0, result.stderr[-5000:]
    print(f"variant-calling, --profile local: {time.monotonic() - started:.1f} s")
    return workdir


def fingerprint(workdir: Path) -> dict[str, str]:
    """SHA-256 of each compared file; a missing file shows as 'missing'."""
    return {
        name: hashlib.sha256((workdir / name).read_bytes()).hexdigest()
        if (workdir / name).is_file()
        else "missing"
        for name in COMPARED_FILES
    }
