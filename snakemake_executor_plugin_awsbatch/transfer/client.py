"""The S3 client and the transfer tuning shared by uploads and downloads.

The client comes from boto3's standard configuration chain only (credentials, region,
AWS_ENDPOINT_URL), so the sandbox's moto server and AWS take the same code path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

MiB = 1024 * 1024
USER_AGENT = "snakemake-executor-plugin-awsbatch"
RUNNER_AGENT = "snakemake-awsbatch-runner"


@dataclass(frozen=True)
class Tuning:
    """How transfers are split and parallelised (values chosen by benchmarks/staging.py)."""

    # Files up to this size move in one request, read into memory once; larger ones go
    # through s3transfer, their parts in parallel.
    multipart_threshold: int = 16 * MiB
    # Upload part size: S3's usual sweet spot; 8 MiB parts were no faster against moto.
    multipart_chunksize: int = 16 * MiB
    # Download range size. Fewer, larger ranges: moto reads the whole object for every
    # ranged GET, so 8 MiB ranges (awscli's default) make a 1 GiB download crawl; 64 MiB
    # ranges still give S3 enough parallel streams and keep a retried range cheap.
    download_chunksize: int = 64 * MiB
    # Concurrent requests for the parts of large files (one pool for all of them). More
    # did not help against moto on 2 cores; against S3 each connection gives ~50-100 MB/s.
    part_concurrency: int = 8
    # Concurrent files (each small file is one request in one of these threads).
    file_workers: int = 16

    def transfer_config(self, *, download: bool) -> TransferConfig:
        return TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=self.download_chunksize if download else self.multipart_chunksize,
            max_concurrency=self.part_concurrency,
            use_threads=True,
        )

    @property
    def pool_connections(self) -> int:
        return self.file_workers + self.part_concurrency + 4


DEFAULT_TUNING = Tuning()


def make_s3_client(tuning: Tuning = DEFAULT_TUNING, agent: str = USER_AGENT) -> S3Client:
    """An S3 client with standard retries and a connection pool sized for the thread pools.

    `agent` goes into the User-Agent, so that S3's logs (and the sandbox's proxy) tell the
    job-side runner's requests from the submitting side's."""
    config = Config(
        user_agent_extra=agent,
        retries={"mode": "standard", "max_attempts": 10},
        max_pool_connections=tuning.pool_connections,
        # Downloads are verified by SHA-256 here, so botocore's CRC check of each response
        # would only cost CPU; uploads keep botocore's default checksums (S3 verifies them).
        response_checksum_validation="when_required",
    )
    return boto3.session.Session().client("s3", config=config)
