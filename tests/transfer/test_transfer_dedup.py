"""Content already in S3 is not uploaded again; the hash cache spares rehashing on reruns."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import pytest

from snakemake_executor_plugin_awsbatch.transfer import (
    FileStamp,
    HashCache,
    UploadItem,
    hashing,
    sha256_bytes,
    upload_files,
)
from tests.transfer.moto_s3 import SMALL_PARTS, MiB


def sabotage(s3: Any, bucket: str, key: str) -> bytes:
    """Replace the object's bytes (same length) but keep its recorded digest (metadata for
    small files, a tag for large ones), so only a new PUT could bring the real content back."""
    head = s3.head_object(Bucket=bucket, Key=key)
    tags = s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    body = b"S" * head["ContentLength"]
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=body,
        Metadata=head["Metadata"],
        Tagging="&".join(f"{t['Key']}={t['Value']}" for t in tags),
    )
    return body


@pytest.mark.parametrize("size", [100, 7 * MiB])
def test_second_upload_of_same_content_sends_nothing(
    tmp_path: Path, bucket: str, s3: Any, size: int
) -> None:
    src = tmp_path / "in.bin"
    src.write_bytes(os.urandom(size))
    item = UploadItem(src, f"s3://{bucket}/k/in.bin")
    first = upload_files([item], tuning=SMALL_PARTS)
    planted = sabotage(s3, bucket, "k/in.bin")

    second = upload_files([item], tuning=SMALL_PARTS)

    assert (first.skipped, second.skipped) == (0, 1)
    assert second.transferred_bytes == 0
    assert s3.get_object(Bucket=bucket, Key="k/in.bin")["Body"].read() == planted


def test_changed_content_is_uploaded_again(tmp_path: Path, bucket: str, s3: Any) -> None:
    src = tmp_path / "in.txt"
    src.write_bytes(b"one")
    item = UploadItem(src, f"s3://{bucket}/in.txt")
    upload_files([item])
    src.write_bytes(b"two")
    stats = upload_files([item])
    assert stats.skipped == 0
    assert s3.get_object(Bucket=bucket, Key="in.txt")["Body"].read() == b"two"


def test_directory_rerun_uploads_only_what_changed(tmp_path: Path, bucket: str) -> None:
    for i in range(5):
        (tmp_path / "d").mkdir(exist_ok=True)
        (tmp_path / "d" / f"{i}.txt").write_text(str(i))
    item = UploadItem(tmp_path / "d", f"s3://{bucket}/d", is_dir=True)
    upload_files([item])
    assert upload_files([item]).results[0].skipped
    (tmp_path / "d" / "3.txt").write_text("changed")
    rerun = upload_files([item]).results[0]
    assert not rerun.skipped and rerun.transferred == len("changed")


def age(path: Path, seconds: float = 3600) -> FileStamp:
    """Backdate the file so it is not 'racy' and its digest may be cached."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - int(seconds * 1e9)))
    return FileStamp.of(path)


def test_hash_cache_survives_a_restart_and_spares_rehashing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "big.bin"
    data.write_bytes(b"x" * 1000)
    stamp = age(data)
    cache_file = tmp_path / ".snakemake" / "awsbatch" / "sha256-cache.json"
    first = HashCache(cache_file)
    digest = first.digest(data, stamp)
    first.save()

    def no_rehash(path: Any) -> str:
        raise AssertionError(f"rehashed {path}")

    monkeypatch.setattr(hashing, "sha256_file", no_rehash)
    assert HashCache(cache_file).digest(data, stamp) == digest == sha256_bytes(b"x" * 1000)


def test_hash_cache_rehashes_after_a_change(tmp_path: Path) -> None:
    data = tmp_path / "f"
    data.write_bytes(b"old")
    cache = HashCache(tmp_path / "cache.json")
    cache.digest(data, age(data))
    data.write_bytes(b"new")
    assert cache.digest(data, age(data, 1800)) == sha256_bytes(b"new")


def test_recently_modified_files_are_not_cached(tmp_path: Path) -> None:
    data = tmp_path / "f"
    data.write_bytes(b"fresh")
    cache = HashCache(tmp_path / "cache.json")
    cache.digest(data, FileStamp.of(data))
    cache.save()
    assert (
        not (tmp_path / "cache.json").exists()
        or json.loads((tmp_path / "cache.json").read_text())["entries"] == {}
    )


def counting_client() -> tuple[Any, Counter[str]]:
    """An S3 client that counts the requests it sends, by operation name."""
    client = boto3.client("s3")
    calls: Counter[str] = Counter()
    client.meta.events.register("before-call.s3.*", lambda model, **kw: calls.update([model.name]))
    return client, calls


def test_many_files_in_one_directory_need_no_head_per_file(tmp_path: Path, bucket: str) -> None:
    names = [f"f{i}.txt" for i in range(20)]
    for n in names:
        (tmp_path / n).write_text(f"content {n}")
    items = [UploadItem(tmp_path / n, f"s3://{bucket}/many/{n}") for n in names]

    client, calls = counting_client()
    upload_files(items, client=client)
    assert (calls["PutObject"], calls["HeadObject"]) == (20, 0)

    calls.clear()
    assert upload_files(items, client=client).skipped == 20
    assert (calls["PutObject"], calls["HeadObject"]) == (0, 0)

    calls.clear()
    (tmp_path / "f3.txt").write_text("content F3.txt")  # same size, other bytes
    rerun = upload_files(items, client=client)
    assert rerun.skipped == 19
    assert calls["PutObject"] == 1
