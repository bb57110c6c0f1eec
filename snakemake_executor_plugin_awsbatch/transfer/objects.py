"""Single-object S3 requests the upload and download paths share."""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import ClientError

from .client import S3Client
from .uri import S3Uri

# The object's SHA-256 travels as user metadata, i.e. the header x-amz-meta-sha256, when
# it is known before the upload; a large file hashed while it uploads gets it as an object
# tag afterwards (metadata cannot change without copying the object; a tag can, and it
# goes away when the object is overwritten).
SHA256_META = "sha256"
SHA256_TAG = "sha256"


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    sha256: str | None  # None for objects this layer did not write


def is_not_found(err: ClientError) -> bool:
    code = err.response.get("Error", {}).get("Code", "")
    return code in ("404", "NoSuchKey", "NotFound")


def head(client: S3Client, s3: S3Uri, *, tags: bool = False) -> ObjectInfo | None:
    """Size and recorded SHA-256 of an object, or None when it does not exist.

    `tags`: also look for the digest in the object's tags (large objects) when its
    metadata has none.
    """
    try:
        resp = client.head_object(Bucket=s3.bucket, Key=s3.key)
    except ClientError as e:
        if is_not_found(e):
            return None
        raise
    digest = resp.get("Metadata", {}).get(SHA256_META)
    if digest is None and tags:
        digest = tagged_sha256(client, s3)
    return ObjectInfo(resp["ContentLength"], digest)


def tagged_sha256(client: S3Client, s3: S3Uri) -> str | None:
    try:
        tag_set = client.get_object_tagging(Bucket=s3.bucket, Key=s3.key)["TagSet"]
    except ClientError as e:
        if is_not_found(e):
            return None
        raise
    return next((t["Value"] for t in tag_set if t["Key"] == SHA256_TAG), None)


def tag_sha256(client: S3Client, s3: S3Uri, sha256: str) -> None:
    tagging = {"TagSet": [{"Key": SHA256_TAG, "Value": sha256}]}
    client.put_object_tagging(Bucket=s3.bucket, Key=s3.key, Tagging=tagging)  # type: ignore[arg-type]


def has_content(client: S3Client, s3: S3Uri, sha256: str, size: int, *, tags: bool = False) -> bool:
    """True when S3 already holds exactly these bytes under this key (so uploading is a no-op)."""
    info = head(client, s3, tags=tags)
    return info is not None and info.sha256 == sha256 and info.size == size


@dataclass(frozen=True)
class Listed:
    size: int
    etag: str  # without quotes


def list_children(
    client: S3Client, bucket: str, prefix: str, max_pages: int
) -> tuple[dict[str, Listed], bool]:
    """The objects directly below `prefix` (a "directory", ending in '/'), read from at most
    `max_pages` pages of a LIST; the flag says whether that was all of them."""
    found: dict[str, Listed] = {}
    kwargs = {"Bucket": bucket, "Prefix": prefix, "Delimiter": "/"}
    for _ in range(max_pages):
        page = client.list_objects_v2(**kwargs)  # type: ignore[arg-type]
        for obj in page.get("Contents", []):
            found[obj["Key"]] = Listed(obj["Size"], obj["ETag"].strip('"'))
        if not page.get("IsTruncated"):
            return found, True
        kwargs["ContinuationToken"] = page["NextContinuationToken"]
    return found, False


def put_bytes(client: S3Client, s3: S3Uri, data: bytes, sha256: str) -> None:
    client.put_object(Bucket=s3.bucket, Key=s3.key, Body=data, Metadata={SHA256_META: sha256})
