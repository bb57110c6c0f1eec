"""The two thread pools of one batch: one for files, one (s3transfer's) for parts of large files.

Leaving the `with` block on an exception (a signal turned into one by the job runner, a
KeyboardInterrupt) drops queued files and cancels running multipart transfers, so the
caller can clean up promptly instead of waiting for gigabytes to finish.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

from boto3.s3.transfer import create_transfer_manager

from .client import S3Client, Tuning


class Workers:
    def __init__(self, client: S3Client, tuning: Tuning, *, download: bool) -> None:
        self.pool = ThreadPoolExecutor(tuning.file_workers, thread_name_prefix="s3-file")
        config = tuning.transfer_config(download=download)
        self.manager = create_transfer_manager(client, config)

    def __enter__(self) -> Workers:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.manager.shutdown(cancel=exc_type is not None)
        self.pool.shutdown(wait=True)

    def run_all(self, fn: Callable[..., Any], calls: Iterable[tuple]) -> list[Any]:
        """Run fn(*args) for every args in parallel; each result or the Exception it raised."""
        futures = [self.pool.submit(fn, *args) for args in calls]
        outcomes: list[Any] = []
        for future in futures:
            try:
                outcomes.append(future.result())
            except Exception as e:
                outcomes.append(e)
        return outcomes
