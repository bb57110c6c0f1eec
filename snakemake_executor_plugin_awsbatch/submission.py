"""SubmitJob without duplicates, at a rate Batch accepts.

SubmitJob is not idempotent and has no client token: when its answer is lost (a 5xx or a
broken connection after Batch created the job), sending it again creates a second job
that runs the same Snakemake job twice. So the client that submits never retries by
itself (aws.py); `Submitter` does:

- throttled (429 and the like): Batch refused the call before doing anything, so it is
  sent again after a back-off;
- any other 5xx, a timeout or a broken connection: the job may exist. Its name is unique
  per run, so after the back-off a ListJobs with that name on the queue tells; only
  if it is not there is the request sent again;
- a 4xx (a bad request): raised at once, it would fail again.

All submissions share one token bucket, below the account's 50 SubmitJob calls per
second that other users of the account need too.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import botocore.exceptions

from snakemake_executor_plugin_awsbatch.aws import error_code, is_throttling

MAX_TRIES = 12
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 20.0


class SubmitError(Exception):
    """Batch refused a submission, or kept failing until the tries were used up."""


class RateLimiter:
    """A token bucket: at most `rate` acquisitions per second, bursts up to `rate`."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._tokens = rate
        self._stamp = clock()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Take a token, waiting for it when the bucket is empty. Each caller reserves its
        token first (the count may go below zero), so waiters are served in turn."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.rate, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait:
            self._sleep(wait)


class Submitter:
    def __init__(
        self,
        client: Any,
        limiter: RateLimiter,
        sleep: Callable[[float], None] = time.sleep,
        warn: Callable[[str], None] = lambda _: None,
    ):
        self._client = client  # a Batch client without automatic retries
        self._limiter = limiter
        self._sleep = sleep
        self._warn = warn

    def submit(self, request: Mapping[str, Any]) -> str:
        """Submit once, whatever happens to the answers; -> the job id."""
        name, queue = request["jobName"], request["jobQueue"]
        for attempt in range(MAX_TRIES):
            if attempt:
                self._sleep(_backoff(attempt))
            try:
                self._limiter.acquire()
                return str(self._client.submit_job(**request)["jobId"])
            except botocore.exceptions.ClientError as e:
                if is_throttling(e):
                    continue
                if _status(e) < 500:
                    raise SubmitError(f"{error_code(e)}: {_message(e)}") from None
                problem = f"{error_code(e)} (HTTP {_status(e)})"
            except botocore.exceptions.BotoCoreError as e:
                problem = str(e)
            self._warn(f"SubmitJob {name}: {problem}; looking the job up before sending it again")
            self._sleep(_backoff(attempt + 1))
            found = self.find(name, queue)
            if found:
                return found
        raise SubmitError(f"SubmitJob {name} on queue {queue} failed {MAX_TRIES} times")

    def find(self, name: str, queue: str) -> str | None:
        """The id of the job of that name on the queue, if Batch has it (any status)."""
        # With a filter, ListJobs ignores jobStatus and lists jobs in every status.
        pages = self._client.get_paginator("list_jobs").paginate(
            jobQueue=queue, filters=[{"name": "JOB_NAME", "values": [name]}]
        )
        for _ in range(MAX_TRIES):
            try:
                ids = [j["jobId"] for page in pages for j in page["jobSummaryList"]]
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
                self._sleep(FIRST_BACKOFF)
                continue
            return ids[0] if ids else None
        raise SubmitError(f"could not tell whether {name} was submitted: ListJobs kept failing")


def _backoff(attempt: int) -> float:
    """Exponential with jitter (AWS's advice for throttled clients), never near zero: a
    look-up right after a lost answer may not see the job yet."""
    ceiling = min(MAX_BACKOFF, FIRST_BACKOFF * 2**attempt)
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def _status(error: botocore.exceptions.ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 500)


def _message(error: botocore.exceptions.ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message", ""))
