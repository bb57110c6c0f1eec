"""Compare the pipeline's calls with the planted truth: precision and recall per sample.

Runs as the `evaluate_calls` rule's `script:`; standard library only (the job image has
no pysam). Both VCFs must already be normalised the same way (`bcftools norm -f ref
-m -any`): left-aligned indels, one ALT allele per record. Then a variant is simply the
tuple (CHROM, POS, REF, ALT, genotype), and a call is right only if all five agree; a
call at the right site with the wrong genotype counts as one false positive and one
false negative.
"""

import gzip
import json
from pathlib import Path
from typing import NamedTuple


class Call(NamedTuple):
    chrom: str
    pos: int
    ref: str
    alt: str
    gt: str  # unphased, sorted alleles: "0/1" or "1/1"


def normalise_gt(gt: str) -> str | None:
    """'1|0' -> '0/1'; None for homozygous reference or a missing genotype."""
    alleles = gt.replace("|", "/").split("/")
    if "." in alleles or all(a == "0" for a in alleles):
        return None
    return "/".join(sorted(alleles, key=int))


def read_genotypes(path: str) -> dict[str, set[Call]]:
    """Each sample's non-reference genotypes in a (bgzipped or plain) VCF."""
    opener = gzip.open if path.endswith(".gz") else open
    calls: dict[str, set[Call]] = {}
    samples: list[str] = []
    with opener(path, "rt") as vcf:
        for line in vcf:
            if line.startswith("##"):
                continue
            fields = line.rstrip("\n").split("\t")
            if line.startswith("#CHROM"):
                samples = fields[9:]
                calls = {sample: set() for sample in samples}
                continue
            chrom, pos, _id, ref, alt = fields[:5]
            if "," in alt:
                raise ValueError(f"{path}: multi-allelic record at {chrom}:{pos}; split it first")
            gt_index = fields[8].split(":").index("GT")
            for sample, values in zip(samples, fields[9:], strict=True):
                gt = normalise_gt(values.split(":")[gt_index])
                if gt is not None:
                    calls[sample].add(Call(chrom, int(pos), ref, alt, gt))
    return calls


def _ratio(numerator: int, denominator: int, *, both_empty: bool) -> float:
    # An empty denominator is perfect only if there was nothing to find and nothing was
    # called; an empty call set against a non-empty truth must never look perfect.
    if denominator == 0:
        return 1.0 if both_empty else 0.0
    return numerator / denominator


def compare(truth: set[Call], calls: set[Call]) -> dict:
    tp, fp, fn = len(truth & calls), len(calls - truth), len(truth - calls)
    empty = not truth and not calls
    return {
        "truth": len(truth),
        "calls": len(calls),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": _ratio(tp, tp + fp, both_empty=empty),
        "recall": _ratio(tp, tp + fn, both_empty=empty),
    }


def evaluate(truth: dict[str, set[Call]], calls: dict[str, set[Call]], samples: list[str]):
    """Per-sample metrics, plus one row per (sample, site) for the variants table.

    A sample missing from the call set counts as having no calls, so it cannot pass.
    """
    summary, rows = {}, []
    for sample in samples:
        t, c = truth.get(sample, set()), calls.get(sample, set())
        summary[sample] = compare(t, c)
        by_site: dict[tuple, dict[str, str]] = {}
        for source, found in (("truth", t), ("call", c)):
            for v in found:
                by_site.setdefault((v.chrom, v.pos, v.ref, v.alt), {})[source] = v.gt
        for (chrom, pos, ref, alt), gts in sorted(by_site.items()):
            truth_gt, call_gt = gts.get("truth", "."), gts.get("call", ".")
            status = _status(truth_gt, call_gt)
            rows.append([sample, chrom, str(pos), ref, alt, truth_gt, call_gt, status])
    return summary, rows


def _status(truth_gt: str, call_gt: str) -> str:
    if truth_gt == call_gt:
        return "TP"
    if call_gt == ".":
        return "FN"
    if truth_gt == ".":
        return "FP"
    return "WRONG_GT"  # right site, wrong genotype: counted as one FP and one FN


def write_reports(summary: dict, rows: list[list[str]], tsv: str, json_path: str, table: str):
    columns = ["truth", "calls", "tp", "fp", "fn", "precision", "recall"]
    with open(tsv, "w") as out:
        out.write("\t".join(["sample", *columns]) + "\n")
        for sample, m in summary.items():
            values = [f"{m[c]:.4f}" if isinstance(m[c], float) else str(m[c]) for c in columns]
            out.write("\t".join([sample, *values]) + "\n")
    Path(json_path).write_text(json.dumps({"samples": summary}, indent=2, sort_keys=True) + "\n")
    header = ["sample", "chrom", "pos", "ref", "alt", "truth_gt", "call_gt", "status"]
    with open(table, "w") as out:
        out.writelines("\t".join(row) + "\n" for row in [header, *rows])


def main(snakemake) -> None:
    summary, rows = evaluate(
        read_genotypes(snakemake.input.truth),
        read_genotypes(snakemake.input.calls),
        list(snakemake.params.samples),
    )
    out = snakemake.output
    write_reports(summary, rows, out.summary_tsv, out.summary_json, out.variants)
    with open(snakemake.log[0], "w") as log:
        for sample, m in summary.items():
            log.write(f"{sample}: precision {m['precision']:.4f} recall {m['recall']:.4f}\n")


if "snakemake" in globals():
    main(globals()["snakemake"])
