"""s3://bucket/key URIs. Keys are kept verbatim: no percent-decoding, so odd characters survive."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class S3Uri:
    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Uri:
        if not uri.startswith("s3://"):
            raise ValueError(f"not an s3:// URI: {uri!r}")
        bucket, sep, key = uri[len("s3://") :].partition("/")
        if not bucket or not sep:
            raise ValueError(f"S3 URI without bucket or key: {uri!r}")
        return cls(bucket, key)

    def child(self, name: str) -> S3Uri:
        """The object `name` below this URI taken as a prefix (a directory)."""
        return S3Uri(self.bucket, f"{self.key.rstrip('/')}/{name}")

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"
