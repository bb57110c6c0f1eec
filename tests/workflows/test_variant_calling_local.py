"""The example pipeline, run with the local executor, finds exactly the planted variants."""

import json
from pathlib import Path

import yaml

from tests.workflows import variant_calling as vc

evaluate = vc.load_script("evaluate_calls")
CONFIG = yaml.safe_load((vc.WORKFLOW_DIR / "config" / "config.yaml").read_text())
SAMPLES = list(CONFIG["samples"])


def test_report_is_perfect_for_every_sample(local_run: Path) -> None:
    report = json.loads((local_run / "results/report/summary.json").read_text())["samples"]
    assert sorted(report) == sorted(SAMPLES)
    for sample, metrics in report.items():
        assert metrics["truth"] > 50, sample  # a real test needs real truth
        assert (metrics["precision"], metrics["recall"]) == (1.0, 1.0), (sample, metrics)


def test_calls_are_exactly_the_planted_variants(local_run: Path) -> None:
    # Read the simulator's own truth, not the pipeline's normalised copy, so a bug in the
    # pipeline's normalisation or evaluation cannot hide here.
    truth = evaluate.read_genotypes(str(local_run / "resources/truth.vcf"))
    calls = evaluate.read_genotypes(str(local_run / "results/calls/calls.vcf.gz"))
    assert sorted(calls) == sorted(SAMPLES)
    for sample in SAMPLES:
        assert truth[sample] - calls[sample] == set(), f"{sample}: planted but not called"
        assert calls[sample] - truth[sample] == set(), f"{sample}: called but not planted"


def test_truth_covers_every_kind_of_variant(local_run: Path) -> None:
    truth = evaluate.read_genotypes(str(local_run / "resources/truth.vcf"))
    planted = set().union(*truth.values())
    assert {v.gt for v in planted} == {"0/1", "1/1"}
    assert any(len(v.ref) == len(v.alt) == 1 for v in planted)  # SNPs
    assert any(len(v.ref) > len(v.alt) for v in planted)  # deletions
    assert any(len(v.ref) < len(v.alt) for v in planted)  # insertions
    # Joint calling is exercised: some variants are shared between samples.
    assert any(truth[a] & truth[b] for a in SAMPLES for b in SAMPLES if a < b)


def test_directives_leave_the_expected_files(local_run: Path) -> None:
    units = [(s, u) for s, us in CONFIG["samples"].items() for u in us]
    # temp(): per-unit BAMs are gone once merged; the raw and unfiltered VCFs too.
    assert not list(local_run.glob("results/mapped/*.bam"))
    assert not (local_run / "results/calls/raw.vcf.gz").exists()
    assert not (local_run / "results/calls/normalised.vcf.gz").exists()
    for sample in SAMPLES:
        assert (local_run / f"results/bam/{sample}.bam.bai").is_file()
    # log: and benchmark: per wildcard combination.
    for sample, unit in units:
        assert (local_run / f"logs/bwa_mem/{sample}.{unit}.log").is_file()
        benchmark = (local_run / f"benchmarks/bwa_mem/{sample}.{unit}.tsv").read_text()
        assert benchmark.startswith("s\th:m:s")


def test_outputs_are_reproducible(local_run: Path, tmp_path: Path) -> None:
    # Another copy, another path, one core: the compared files must not change, or the
    # comparison between the local and the AWS Batch executor would mean nothing.
    workdir = vc.copy_workflow(tmp_path / "again")
    result = vc.run_snakemake(workdir, "local", "--cores", "1")
    assert result.returncode == 0, result.stderr[-5000:]
    assert "missing" not in vc.fingerprint(local_run).values()
    assert vc.fingerprint(workdir) == vc.fingerprint(local_run)


def test_enforce_accuracy_fails_the_run_below_the_threshold(local_run: Path) -> None:
    passed = vc.run_snakemake(local_run, "local", "--config", "enforce_accuracy=true")
    assert passed.returncode == 0, passed.stderr[-5000:]
    assert (local_run / "results/report/accuracy.ok").is_file()
    # Only check_accuracy reruns (its params changed); nobody can reach recall 1.01.
    failed = vc.run_snakemake(
        local_run, "local", "--config", "enforce_accuracy=true", "min_recall=1.01"
    )
    assert failed.returncode != 0
    assert "calls below precision 1.0 / recall 1.01" in failed.stderr
