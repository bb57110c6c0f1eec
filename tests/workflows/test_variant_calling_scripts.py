"""The pipeline's two scripts on their own: the evaluation must be able to fail, and the
simulated truth must be what the rest of the tests assume."""

import gzip
import itertools
import json
import random
from pathlib import Path

import pytest

from tests.workflows import variant_calling as vc

evaluate = vc.load_script("evaluate_calls")
simulate = vc.load_script("simulate_data")
Call = evaluate.Call

TRUTH = {
    Call("chr1", 100, "A", "G", "0/1"),
    Call("chr1", 400, "C", "CAT", "1/1"),
    Call("chr2", 250, "GTA", "G", "0/1"),
}

VCF = """\
##fileformat=VCFv4.2
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\tS2\tS3
chr1\t100\t.\tA\tG\t50\tPASS\t.\tGT:DP\t1|0:30\t0/0:31\t./.:0
chr1\t400\t.\tC\tCAT\t60\tPASS\t.\tGT\t1/1\t0/1\t0|0
"""


# --- evaluate_calls ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gt", "expected"),
    [("0/1", "0/1"), ("1/0", "0/1"), ("1|0", "0/1"), ("1/1", "1/1"), ("0/0", None), ("./.", None)],
)
def test_normalise_gt(gt: str, expected: str | None) -> None:
    assert evaluate.normalise_gt(gt) == expected


@pytest.mark.parametrize("compressed", [False, True])
def test_read_genotypes_keeps_non_reference_genotypes_per_sample(
    tmp_path: Path, compressed: bool
) -> None:
    path = tmp_path / ("calls.vcf.gz" if compressed else "calls.vcf")
    opener = gzip.open if compressed else open
    with opener(path, "wt") as out:
        out.write(VCF)
    assert evaluate.read_genotypes(str(path)) == {
        "S1": {Call("chr1", 100, "A", "G", "0/1"), Call("chr1", 400, "C", "CAT", "1/1")},
        "S2": {Call("chr1", 400, "C", "CAT", "0/1")},
        "S3": set(),
    }


def test_read_genotypes_rejects_multiallelic_records(tmp_path: Path) -> None:
    path = tmp_path / "multi.vcf"
    path.write_text(VCF.replace("\tG\t50", "\tG,T\t50"))
    with pytest.raises(ValueError, match="multi-allelic"):
        evaluate.read_genotypes(str(path))


def test_identical_sets_score_perfectly() -> None:
    metrics = evaluate.compare(TRUTH, set(TRUTH))
    assert (metrics["tp"], metrics["fp"], metrics["fn"]) == (3, 0, 0)
    assert (metrics["precision"], metrics["recall"]) == (1.0, 1.0)


def test_a_missed_variant_lowers_recall_only() -> None:
    metrics = evaluate.compare(TRUTH, TRUTH - {Call("chr1", 100, "A", "G", "0/1")})
    assert metrics["precision"] == 1.0
    assert metrics["recall"] == pytest.approx(2 / 3)


def test_an_extra_call_lowers_precision_only() -> None:
    metrics = evaluate.compare(TRUTH, TRUTH | {Call("chr2", 900, "T", "C", "0/1")})
    assert metrics["precision"] == pytest.approx(3 / 4)
    assert metrics["recall"] == 1.0


def test_a_wrong_genotype_is_both_a_false_positive_and_a_false_negative() -> None:
    wrong = Call("chr1", 400, "C", "CAT", "0/1")  # planted as 1/1
    metrics = evaluate.compare(TRUTH, (TRUTH - {wrong._replace(gt="1/1")}) | {wrong})
    assert (metrics["tp"], metrics["fp"], metrics["fn"]) == (2, 1, 1)
    assert metrics["precision"] < 1.0 and metrics["recall"] < 1.0


def test_no_calls_is_never_perfect() -> None:
    assert evaluate.compare(TRUTH, set())["precision"] == 0.0
    assert evaluate.compare(TRUTH, set())["recall"] == 0.0
    assert evaluate.compare(set(), set())["precision"] == 1.0


def test_reports_list_every_site_with_its_status(tmp_path: Path) -> None:
    calls = {
        "S1": (TRUTH - {Call("chr2", 250, "GTA", "G", "0/1")})
        | {Call("chr2", 900, "T", "C", "0/1")},
        # S2 is missing from the call set altogether: it must score zero recall.
    }
    summary, rows = evaluate.evaluate({"S1": TRUTH, "S2": TRUTH}, calls, ["S1", "S2"])
    assert summary["S2"]["recall"] == 0.0
    files = [str(tmp_path / name) for name in ("summary.tsv", "summary.json", "variants.tsv")]
    evaluate.write_reports(summary, rows, *files)
    statuses = {
        (row.split("\t")[0], row.split("\t")[2], row.split("\t")[-1])
        for row in Path(files[2]).read_text().splitlines()[1:]
    }
    assert ("S1", "250", "FN") in statuses
    assert ("S1", "900", "FP") in statuses
    assert ("S1", "100", "TP") in statuses
    assert ("S2", "100", "FN") in statuses
    assert json.loads(Path(files[1]).read_text())["samples"]["S1"]["fp"] == 1
    assert Path(files[0]).read_text().splitlines()[1].startswith("S1\t3\t3\t2\t1\t1\t")


# --- simulate_data -----------------------------------------------------------------------

SIM = {
    "seed": 7,
    "contigs": {"c1": 4000, "c2": 3000},
    "margin": 300,
    "min_gap": 150,
    "gap_jitter": 150,
    "indel_fraction": 0.5,
    "max_indel": 3,
    "genotype_weights": [2, 2, 1],
    "read_length": 100,
    "fragment_mean": 300,
    "fragment_sd": 30,
    "coverage_per_unit": 2,
    "error_rate": 0.001,
}
SAMPLES = {"A": ["L1", "L2"], "B": ["L1"]}


def _simulate(folder: Path, sim: dict) -> dict[str, bytes]:
    folder.mkdir()
    out = {
        "reference": str(folder / "ref.fa"),
        "truth": str(folder / "truth.vcf"),
        "reads": {
            (s, u): (str(folder / f"{s}.{u}_1.fq.gz"), str(folder / f"{s}.{u}_2.fq.gz"))
            for s, us in SAMPLES.items()
            for u in us
        },
    }
    simulate.simulate(out, SAMPLES, sim)
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_simulation_is_reproducible_and_depends_on_the_seed(tmp_path: Path) -> None:
    first = _simulate(tmp_path / "first", SIM)
    assert len(first) == 2 + 2 * 3
    assert _simulate(tmp_path / "second", SIM) == first
    other = _simulate(tmp_path / "other", {**SIM, "seed": 8})
    assert other["truth.vcf"] != first["truth.vcf"]


def test_planted_variants_are_spaced_valid_and_unambiguous() -> None:
    reference = simulate.random_reference(random.Random(1), SIM["contigs"])
    variants = simulate.plant_variants(random.Random(2), reference, 3, SIM)
    assert {v.kind for v in variants} == {"SNP", "INS", "DEL"}
    for v in variants:
        seq = reference[v.chrom]
        assert SIM["margin"] <= v.pos <= len(seq) - SIM["margin"]
        assert seq[v.pos - 1 : v.pos - 1 + len(v.ref)] == v.ref  # REF matches the reference
        assert v.ref[0] == v.alt[0] or v.kind == "SNP"  # indels keep their anchor base
        assert any(gt != "0/0" for gt in v.genotypes)  # somebody carries it
        # An indel's changed bases differ from both neighbours, so it cannot slide.
        if v.kind == "INS":
            inserted, after = v.alt[1:], seq[v.pos]
            assert inserted[0] != after and inserted[-1] != v.ref
        elif v.kind == "DEL":
            deleted, after = v.ref[1:], seq[v.pos - 1 + len(v.ref)]
            assert deleted[0] != after and deleted[-1] != v.ref[0]
    for a, b in itertools.pairwise(variants):
        assert a.chrom != b.chrom or b.pos - a.pos >= SIM["min_gap"]


def test_haplotypes_carry_the_genotypes() -> None:
    reference = {"c": "ACGTACGTAC"}
    variants = [
        simulate.Variant("c", 2, "C", "T", "SNP", ("1/1",)),
        simulate.Variant("c", 5, "ACG", "A", "DEL", ("0/1",)),
        simulate.Variant("c", 9, "A", "AGG", "INS", ("0/0",)),
    ]
    first, second = simulate.haplotypes(random.Random(0), reference, variants, 0)
    assert sorted([first["c"], second["c"]]) == sorted(["ATGTATAC", "ATGTACGTAC"])
