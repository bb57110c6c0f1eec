"""The moto S3 server and its fixtures, shared with the other transfer-level tests."""

from tests.transfer.moto_s3 import aws_env, bucket, moto_endpoint, s3

__all__ = ["aws_env", "bucket", "moto_endpoint", "s3"]
