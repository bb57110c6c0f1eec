"""Index files next to a declared input: which travel with it, at what cost, and the hint."""

from __future__ import annotations

import os
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from snakemake_executor_plugin_awsbatch import companions
from snakemake_executor_plugin_awsbatch.companions import (
    Companions,
    StorageCompanions,
    candidates,
)

BWA = ["genome.fa.amb", "genome.fa.ann", "genome.fa.bwt", "genome.fa.pac", "genome.fa.sa"]
BWA_MISSING = "[E::bwa_idx_load_from_disk] fail to locate the index files\n"


def files(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)


def settle(directory: Path) -> None:
    """Date the directory back, as it is for data that sat there before the run."""
    past = os.stat(directory).st_mtime - 60
    os.utime(directory, (past, past))


def finder(root: Path, *, enabled: bool = True) -> tuple[Companions, list]:
    said: list[str] = []
    return Companions(str(root), enabled=enabled, log=said.append), said


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("genome.fa", {"genome.fa.fai", "genome.fa.bwt", "genome.fa.0123", "genome.dict"}),
        ("genome.fa", {"genome.1.bt2", "genome.rev.2.bt2l", "genome.fa.1.bt2", "genome.mmi"}),
        ("sample.bam", {"sample.bam.bai", "sample.bam.csi", "sample.bai"}),
        ("sample.cram", {"sample.cram.crai", "sample.crai"}),
        ("calls.vcf.gz", {"calls.vcf.gz.tbi", "calls.vcf.gz.csi", "calls.dict"}),
        ("genome.fa.gz", {"genome.fa.gz.fai", "genome.fa.gz.gzi", "genome.dict"}),
        ("genome", {"genome.1.bt2", "genome.fai"}),
    ],
)
def test_candidates_cover_appended_and_replacing_forms(name: str, expected: set[str]) -> None:
    found = set(candidates(name))
    assert expected <= found, expected - found
    assert name not in found


def test_candidates_never_name_the_main_file_or_strip_two_plain_extensions() -> None:
    found = set(candidates("sample.sorted.bam"))
    assert "sample.sorted.bai" in found
    assert "sample.bai" not in found  # another sample's index, not this one's
    assert "genome.fa" not in set(candidates("genome.fa.fai"))
    # An index file is no main file: it brings none of its siblings.
    assert "genome.fa.amb" not in set(candidates("genome.fa.bwt"))


def test_the_companions_that_exist_travel_and_nothing_else(tmp_path: Path) -> None:
    files(
        tmp_path,
        "data/genome.fa",
        *(f"data/{n}" for n in BWA),
        "data/genome.fa.fai",
        "data/genome.dict",
        "data/genome.gtf",  # shares the stem, but is no index
        "data/other.fa.fai",  # another FASTA's index
        "data/A.bam",
        "data/A.bam.bai",
    )
    found, said = finder(tmp_path)
    staged = found.of_job(["data/genome.fa", "data/A.bam"], ["results/A.vcf"])
    assert sorted(staged) == sorted(
        [f"data/{n}" for n in BWA] + ["data/genome.fa.fai", "data/genome.dict", "data/A.bam.bai"]
    )
    # The run's log names each input's companions once, with how to declare them.
    assert len(said) == 2
    assert 'multiext("data/genome.fa", ".amb", ".ann", ".bwt", ".fai", ".pac", ".sa")' in said[0]
    assert '"data/genome.dict"' in said[0] and "--awsbatch-no-index-files" in said[0]
    found.of_job(["data/genome.fa"], [])
    assert len(said) == 2


def test_the_jobs_outputs_are_not_companions(tmp_path: Path) -> None:
    files(tmp_path, "data/A.bam", "data/A.bam.bai", "data/A.bam.csi", "data/A.bai")
    found, _ = finder(tmp_path)
    # The .csi is what this job writes (an index rule), from an older run.
    staged = found.of_job(["data/A.bam"], ["data/A.bam.csi"])
    assert staged == ["data/A.bai", "data/A.bam.bai"]


def test_a_rule_that_declares_an_index_file_of_an_input_gets_nothing_more(tmp_path: Path) -> None:
    # As in workflows/variant-calling: the calling rule declares the FASTA and its .fai, the
    # mapping rule the FASTA and bwa's files. Neither gets the other's (gigabytes for a
    # human genome); a VCF declared alone still brings its .tbi.
    files(
        tmp_path,
        "ref/genome.fa",
        "ref/genome.fa.fai",
        *(f"ref/{n}" for n in BWA),
        "calls/all.vcf.gz",
        "calls/all.vcf.gz.tbi",
    )
    found, said = finder(tmp_path)
    assert found.of_job(["ref/genome.fa", "ref/genome.fa.fai"], []) == []
    assert found.of_job(["ref/genome.fa", *(f"ref/{n}" for n in BWA)], []) == []
    assert found.of_job(["calls/all.vcf.gz"], []) == ["calls/all.vcf.gz.tbi"]
    assert len(said) == 1


def test_a_directory_of_thousands_of_files_costs_one_listing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "bams"
    data.mkdir()
    for i in range(5000):
        (data / f"s{i}.bam").write_text("")
        (data / f"s{i}.bam.bai").write_text("")
    settle(data)
    scans = []
    real_scandir = os.scandir
    monkeypatch.setattr(companions.os, "scandir", lambda p: scans.append(p) or real_scandir(p))
    stats = []
    real_stat = os.stat
    monkeypatch.setattr(companions.os, "stat", lambda p: stats.append(p) or real_stat(p))
    found, _ = finder(tmp_path)
    for i in range(0, 5000, 50):  # 100 jobs, each with its own BAM
        assert found.of_job([f"bams/s{i}.bam"], []) == [f"bams/s{i}.bam.bai"]
    assert len(scans) == 1 and found.listings == 1
    assert len(stats) == 100  # one stat of the directory per job, not one per suffix


def test_a_new_file_in_a_listed_directory_is_seen(tmp_path: Path) -> None:
    files(tmp_path, "data/A.bam")
    settle(tmp_path / "data")
    found, _ = finder(tmp_path)
    assert found.of_job(["data/A.bam"], []) == []
    files(tmp_path, "data/A.bam.bai")  # e.g. brought back as another job's output
    assert found.of_job(["data/A.bam"], []) == ["data/A.bam.bai"]
    assert found.listings == 2


def test_nothing_outside_the_working_directory_is_staged(tmp_path: Path) -> None:
    files(tmp_path, "outside/genome.fa", "outside/genome.fa.fai", "work/data/x.txt")
    found, said = finder(tmp_path / "work")
    assert found.of_job([str(tmp_path / "outside" / "genome.fa")], []) == []
    assert found.of_job(["../outside/genome.fa"], []) == []
    assert said == []


def test_absolute_inputs_inside_the_working_directory_keep_their_form(tmp_path: Path) -> None:
    files(tmp_path, "data/genome.fa", "data/genome.fa.fai")
    found, _ = finder(tmp_path)
    absolute = str(tmp_path / "data" / "genome.fa")
    assert found.of_job([absolute], []) == [absolute + ".fai"]


def test_switched_off_nothing_travels(tmp_path: Path) -> None:
    files(tmp_path, "data/genome.fa", "data/genome.fa.fai")
    off, said = finder(tmp_path, enabled=False)
    assert off.of_job(["data/genome.fa"], []) == []
    assert said == []


def test_failure_hint_names_the_unstaged_index_files_and_how_to_declare_them(
    tmp_path: Path,
) -> None:
    files(tmp_path, "data/genome.fa", *(f"data/{n}" for n in BWA), "data/A.fastq")
    off, _ = finder(tmp_path, enabled=False)
    hint = off.failure_hint(["data/genome.fa", "data/A.fastq"], ["mapped/A.bam"], [BWA_MISSING])
    for name in BWA:
        assert f"data/{name}" in hint
    assert 'multiext("data/genome.fa", ".amb", ".ann", ".bwt", ".pac", ".sa")' in hint
    assert "--awsbatch-no-index-files" in hint
    assert hint.count("\n") == 1  # one line of its own below the log tail


def test_failure_hint_only_when_the_log_points_at_a_missing_file(tmp_path: Path) -> None:
    files(tmp_path, "data/genome.fa", "data/genome.fa.bwt")
    off, _ = finder(tmp_path, enabled=False)
    assert off.failure_hint(["data/genome.fa"], [], ["Segmentation fault\n"]) == ""
    # A log that names one of the files is enough.
    assert "data/genome.fa.bwt" in off.failure_hint(
        ["data/genome.fa"], [], ["open genome.fa.bwt: EACCES\n"]
    )


def test_failure_hint_with_companions_on_names_only_what_did_not_travel(tmp_path: Path) -> None:
    files(tmp_path, "data/genome.fa", *(f"data/{n}" for n in BWA), "data/genome.fa.custom")
    on, _ = finder(tmp_path)
    hint = on.failure_hint(["data/genome.fa"], [], ["could not open genome.fa.custom\n"])
    assert "data/genome.fa.custom" in hint
    assert not any(f"data/{name}" in hint for name in BWA)
    assert "--awsbatch-no-index-files" not in hint
    files(tmp_path, "clean/genome.fa", *(f"clean/{n}" for n in BWA))
    assert on.failure_hint(["clean/genome.fa"], [], [BWA_MISSING]) == ""


def storage_finder(s3: object) -> tuple[StorageCompanions, list[str]]:
    """Snakemake's default local storage prefix on both sides; log and warnings in `said`."""
    said: list[str] = []
    prefix = ".snakemake/storage"
    found = StorageCompanions(
        s3, enabled=True, local_prefix=prefix, job_prefix=prefix, log=said.append, warn=said.append
    )
    return found, said


def test_in_storage_mode_companions_in_s3_land_beside_the_storage_plugins_copy() -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="bkt")
        for key in ["p/data/genome.fa", *(f"p/data/{n}" for n in BWA), "p/data/genome.gtf"]:
            s3.put_object(Bucket="bkt", Key=key, Body=key.encode())
        s3.put_object(Bucket="bkt", Key="p/data/deeper/genome.fa.fai", Body=b"not beside it")
        found, said = storage_finder(s3)
        copy = ".snakemake/storage/s3/bkt/p/data/genome.fa"
        for _ in range(3):  # three jobs of one round read the same reference
            entries = found.of_job(
                [("s3://bkt/p/data/genome.fa", copy)], ["s3://bkt/p/data/genome.fa.sa"]
            )
        assert found.listings == 1
        assert sorted(e.path for e in entries) == [
            f".snakemake/storage/s3/bkt/p/data/{n}" for n in BWA if n != "genome.fa.sa"
        ]
        assert {e.uri for e in entries} == {f"s3://bkt/p/data/{n}" for n in BWA} - {
            "s3://bkt/p/data/genome.fa.sa"
        }
        assert all(e.sha256 == "" and e.size == len(e.uri) - len("s3://bkt/") for e in entries)
        assert len(said) == 1 and 'multiext("s3://bkt/p/data/genome.fa", ".amb"' in said[0]
        found.new_round()  # objects written by upstream jobs since are seen
        found.of_job([("s3://bkt/p/data/genome.fa", copy)], [])
        assert found.listings == 2


def test_a_bucket_that_may_not_be_listed_costs_its_companions_not_the_run() -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        found, said = storage_finder(s3)
        inputs = [("s3://no-such-bucket/ref/genome.fa", ".snakemake/storage/s3/x/ref/genome.fa")]
        assert found.of_job(inputs, []) == []
        found.new_round()
        assert found.of_job(inputs, []) == []
        (warning,) = said  # said once, not every round
        assert "Cannot list s3://no-such-bucket/ref/" in warning and "s3:ListBucket" in warning
