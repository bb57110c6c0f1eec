"""Bad input: a file changing during upload, checksum mismatches, missing files and objects.

Each gives one error naming the file, and nothing complete is replaced by something partial.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import boto3
import pytest

from snakemake_executor_plugin_awsbatch.transfer import (
    ChangedDuringUploadError,
    ChecksumMismatchError,
    DownloadItem,
    MissingFileError,
    MissingObjectError,
    TransferFailedError,
    UploadItem,
    download_files,
    sha256_bytes,
    upload_files,
)
from tests.transfer.moto_s3 import SMALL_PARTS, MiB


def client_that_appends_to(path: Path, operation: str) -> Any:
    """An S3 client that appends to `path` the first time it sends `operation`, i.e. while
    that file is being uploaded."""
    client = boto3.client("s3")
    done: list[bool] = []

    def change(**kwargs: Any) -> None:
        if not done:
            done.append(True)
            with open(path, "ab") as f:
                f.write(b"appended while uploading")

    client.meta.events.register(f"before-call.s3.{operation}", change)
    return client


def only_error(excinfo: pytest.ExceptionInfo[TransferFailedError]) -> BaseException:
    assert len(excinfo.value.errors) == 1
    return excinfo.value.errors[0]


def test_large_file_changed_during_upload_is_an_error_and_leaves_no_object(
    tmp_path: Path, bucket: str, s3: Any
) -> None:
    src = tmp_path / "growing.bin"
    src.write_bytes(os.urandom(11 * MiB))
    client = client_that_appends_to(src, "UploadPart")
    with pytest.raises(TransferFailedError) as excinfo:
        upload_files([UploadItem(src, f"s3://{bucket}/g.bin")], client=client, tuning=SMALL_PARTS)
    err = only_error(excinfo)
    assert isinstance(err, ChangedDuringUploadError) and str(src) in str(err)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_small_file_changed_during_upload_is_an_error(tmp_path: Path, bucket: str, s3: Any) -> None:
    src = tmp_path / "small.txt"
    src.write_bytes(b"first version")
    client = client_that_appends_to(src, "PutObject")
    with pytest.raises(TransferFailedError) as excinfo:
        upload_files([UploadItem(src, f"s3://{bucket}/s.txt")], client=client)
    assert isinstance(only_error(excinfo), ChangedDuringUploadError)
    # What did reach S3 is exactly the bytes its recorded digest describes.
    obj = s3.get_object(Bucket=bucket, Key="s.txt")
    assert obj["Metadata"]["sha256"] == sha256_bytes(obj["Body"].read())


@pytest.mark.parametrize("size", [100, 6 * MiB])
def test_checksum_mismatch_keeps_the_existing_file(tmp_path: Path, bucket: str, size: int) -> None:
    src = tmp_path / "in.bin"
    src.write_bytes(os.urandom(size))
    uri = f"s3://{bucket}/in.bin"
    upload_files([UploadItem(src, uri)], tuning=SMALL_PARTS)
    dest = tmp_path / "out" / "in.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"complete earlier version")

    with pytest.raises(TransferFailedError) as excinfo:
        download_files([DownloadItem(uri, dest, sha256="0" * 64)], tuning=SMALL_PARTS)

    err = only_error(excinfo)
    assert isinstance(err, ChecksumMismatchError)
    assert str(dest) in str(err) and uri in str(err)
    assert dest.read_bytes() == b"complete earlier version"
    assert os.listdir(dest.parent) == ["in.bin"]


def test_object_whose_bytes_do_not_match_its_recorded_digest_is_rejected(
    tmp_path: Path, bucket: str, s3: Any
) -> None:
    s3.put_object(Bucket=bucket, Key="bad", Body=b"corrupt", Metadata={"sha256": "1" * 64})
    with pytest.raises(TransferFailedError) as excinfo:
        download_files([DownloadItem(f"s3://{bucket}/bad", tmp_path / "bad")])
    assert isinstance(only_error(excinfo), ChecksumMismatchError)
    assert not (tmp_path / "bad").exists()


def test_missing_local_file_and_missing_object_are_named(tmp_path: Path, bucket: str) -> None:
    with pytest.raises(TransferFailedError) as up:
        upload_files([UploadItem(tmp_path / "nope.txt", f"s3://{bucket}/nope.txt")])
    assert isinstance(only_error(up), MissingFileError) and "nope.txt" in str(up.value)
    with pytest.raises(TransferFailedError) as down:
        download_files([DownloadItem(f"s3://{bucket}/absent.txt", tmp_path / "absent.txt")])
    assert isinstance(only_error(down), MissingObjectError) and "absent.txt" in str(down.value)


def test_directory_without_listing_is_not_complete(tmp_path: Path, bucket: str, s3: Any) -> None:
    s3.put_object(Bucket=bucket, Key="half/a.txt", Body=b"a")
    with pytest.raises(TransferFailedError) as excinfo:
        download_files([DownloadItem(f"s3://{bucket}/half", tmp_path / "half", is_dir=True)])
    assert isinstance(only_error(excinfo), MissingObjectError)
    assert not (tmp_path / "half").exists()
    assert os.listdir(tmp_path) == []


def test_one_failure_does_not_stop_the_other_items(tmp_path: Path, bucket: str) -> None:
    good = tmp_path / "good.txt"
    good.write_text("good")
    with pytest.raises(TransferFailedError) as excinfo:
        upload_files(
            [
                UploadItem(tmp_path / "missing", f"s3://{bucket}/missing"),
                UploadItem(good, f"s3://{bucket}/good.txt"),
            ]
        )
    assert [r.path for r in excinfo.value.results] == [str(good)]
