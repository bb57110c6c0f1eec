"""Uploads and downloads through moto: content, recorded checksums, directories, odd names."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from snakemake_executor_plugin_awsbatch.transfer import (
    LISTING_NAME,
    DownloadItem,
    TransferFailedError,
    UploadItem,
    download_files,
    sha256_file,
    upload_files,
)
from tests.transfer.moto_s3 import SMALL_PARTS, MiB

ODD_NAMES = [
    "with space.txt",
    "hash#and?query.txt",
    "percent%20plus+.txt",
    "ünï cødé ✓.txt",
    "q'uote\".txt",
]


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("size", [0, 1000, 12 * MiB + 7])
def test_file_round_trip_records_and_verifies_sha256(
    tmp_path: Path, bucket: str, s3: Any, size: int
) -> None:
    src = write(tmp_path / "src" / "data.bin", os.urandom(size))
    uri = f"s3://{bucket}/stage/data.bin"

    up = upload_files([UploadItem(src, uri)], tuning=SMALL_PARTS)

    digest = sha256_file(src)
    assert up.results[0].sha256 == digest and up.results[0].size == size
    # The digest is recorded with the object: as metadata when known before the upload
    # (small files), as a tag set after it (large files are hashed while they upload).
    head = s3.head_object(Bucket=bucket, Key="stage/data.bin")
    tags = s3.get_object_tagging(Bucket=bucket, Key="stage/data.bin")["TagSet"]
    recorded = [head["Metadata"].get("sha256"), *(t["Value"] for t in tags if t["Key"] == "sha256")]
    assert [d for d in recorded if d] == [digest]
    dest = tmp_path / "dest" / "sub" / "data.bin"
    down = download_files([DownloadItem(uri, dest, sha256=digest, size=size)], tuning=SMALL_PARTS)
    assert dest.read_bytes() == src.read_bytes()
    assert down.results[0].sha256 == digest
    assert os.listdir(dest.parent) == ["data.bin"]  # no temporary file left behind


@pytest.mark.parametrize("size", [5, 12 * MiB + 7])
def test_download_without_known_size_or_digest_uses_the_recorded_one(
    tmp_path: Path, bucket: str, s3: Any, size: int
) -> None:
    src = write(tmp_path / "a.txt", os.urandom(size))
    uri = f"s3://{bucket}/a.txt"
    upload_files([UploadItem(src, uri)], tuning=SMALL_PARTS)
    stats = download_files([DownloadItem(uri, tmp_path / "b.txt")], tuning=SMALL_PARTS)
    assert (tmp_path / "b.txt").read_bytes() == src.read_bytes()
    assert stats.results[0].sha256 == sha256_file(src)

    # The recorded digest is what the download is checked against.
    s3.put_object(Bucket=bucket, Key="a.txt", Body=b"X" * size, Metadata={"sha256": "0" * 64})
    with pytest.raises(TransferFailedError, match="checksum mismatch"):
        download_files([DownloadItem(uri, tmp_path / "c.txt")], tuning=SMALL_PARTS)
    assert not (tmp_path / "c.txt").exists()


def test_odd_file_names_round_trip(tmp_path: Path, bucket: str, s3: Any) -> None:
    items = []
    for name in ODD_NAMES:
        write(tmp_path / "src" / name, name.encode())
        items.append(UploadItem(tmp_path / "src" / name, f"s3://{bucket}/odd/{name}"))
    upload_files(items)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="odd/")["Contents"]}
    assert keys == {f"odd/{n}" for n in ODD_NAMES}
    download_files([DownloadItem(i.uri, tmp_path / "dest" / Path(i.path).name) for i in items])
    for name in ODD_NAMES:
        assert (tmp_path / "dest" / name).read_text() == name


def test_many_small_files_round_trip(tmp_path: Path, bucket: str) -> None:
    names = [f"d{i % 7}/f{i}.txt" for i in range(300)]
    for n in names:
        write(tmp_path / "src" / n, f"content {n}".encode())
    upload_files([UploadItem(tmp_path / "src" / n, f"s3://{bucket}/many/{n}") for n in names])
    stats = download_files(
        [DownloadItem(f"s3://{bucket}/many/{n}", tmp_path / "dest" / n) for n in names]
    )
    assert stats.files == 300
    assert all((tmp_path / "dest" / n).read_text() == f"content {n}" for n in names)


def make_tree(root: Path) -> None:
    write(root / "top.txt", b"top")
    write(root / "nested" / "deeper" / "x y.bin", os.urandom(5000))
    write(root / "nested" / ODD_NAMES[1], b"odd")
    (root / "empty" / "also empty").mkdir(parents=True)


def tree(root: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for here, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.relpath(os.path.join(here, d), root)] = None
        for f in files:
            out[os.path.relpath(os.path.join(here, f), root)] = Path(here, f).read_bytes()
    return out


def test_directory_round_trip_keeps_empty_directories(tmp_path: Path, bucket: str, s3: Any) -> None:
    make_tree(tmp_path / "out")
    uri = f"s3://{bucket}/dirs/out"
    up = upload_files([UploadItem(tmp_path / "out", uri, is_dir=True)])
    assert up.results[0].files == 3 and up.results[0].is_dir
    s3.head_object(Bucket=bucket, Key=f"dirs/out/{LISTING_NAME}")

    dest = tmp_path / "back" / "out"
    write(dest / "stale.txt", b"from an earlier run")  # replaced whole, not merged
    down = download_files([DownloadItem(uri, dest, sha256=up.results[0].sha256, is_dir=True)])

    assert tree(dest) == tree(tmp_path / "out")
    assert down.results[0].files == 3
    assert sorted(os.listdir(dest.parent)) == ["out"]  # no temporary siblings left


def test_directory_listing_ignores_stray_objects_under_the_prefix(
    tmp_path: Path, bucket: str, s3: Any
) -> None:
    make_tree(tmp_path / "out")
    uri = f"s3://{bucket}/dirs/out"
    upload_files([UploadItem(tmp_path / "out", uri, is_dir=True)])
    s3.put_object(Bucket=bucket, Key="dirs/out/left-over-from-old-run.txt", Body=b"x")
    download_files([DownloadItem(uri, tmp_path / "back", is_dir=True)])
    assert tree(tmp_path / "back") == tree(tmp_path / "out")
