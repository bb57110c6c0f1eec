"""SubmitJob exactly once, whatever happens to the answers; the shared rate limit."""

from __future__ import annotations

from typing import Any

import botocore.exceptions
import pytest

from snakemake_executor_plugin_awsbatch.submission import RateLimiter, SubmitError, Submitter
from tests.unit.conftest import BatchAccount


def _error(code: str, status: int) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {
            "Error": {"Code": code, "Message": "injected"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "SubmitJob",
    )


class Flaky:
    """moto's Batch client, with the faults a proxy in front of Batch would inject."""

    def __init__(self, client: Any, faults: list[str]):
        self._client = client
        self.faults = faults  # per call: "ok", "refuse-429", "refuse-503", "lose", "bad"
        self.sent = 0

    def submit_job(self, **request: Any) -> dict[str, Any]:
        fault = self.faults.pop(0) if self.faults else "ok"
        self.sent += 1
        if fault == "refuse-429":
            raise _error("TooManyRequestsException", 429)
        if fault == "refuse-503":
            raise botocore.exceptions.EndpointConnectionError(endpoint_url="http://batch")
        if fault == "bad":
            raise _error("ClientException", 400)
        answer = self._client.submit_job(**request)
        if fault == "lose":  # Batch created the job; its answer never arrived
            raise _error("ServerException", 500)
        return answer

    def get_paginator(self, name: str) -> Any:
        return self._client.get_paginator(name)


def _setup(account: BatchAccount) -> dict[str, Any]:
    account.standard_queues()
    jobdef = account.batch.register_job_definition(
        jobDefinitionName="d",
        type="container",
        containerProperties={"image": "x", "memory": 4, "vcpus": 1},
    )
    return {
        "jobName": "smk-a-1234abcd-1-a1",
        "jobQueue": "default",
        "jobDefinition": jobdef["jobDefinitionArn"],
    }


def _jobs_named(account: BatchAccount, name: str) -> list[str]:
    found = account.batch.list_jobs(
        jobQueue="default", filters=[{"name": "JOB_NAME", "values": [name]}]
    )
    return [j["jobId"] for j in found["jobSummaryList"]]


def _submitter(client: Any) -> Submitter:
    return Submitter(client, RateLimiter(1000), sleep=lambda _: None)


@pytest.mark.parametrize(
    "faults",
    [["lose"], ["lose", "lose"], ["refuse-429", "refuse-429", "lose"], ["refuse-503", "ok"]],
)
def test_a_lost_or_refused_answer_never_makes_a_second_job(
    account: BatchAccount, faults: list[str]
) -> None:
    request = _setup(account)
    client = Flaky(account.batch, list(faults))

    job_id = _submitter(client).submit(request)

    assert _jobs_named(account, request["jobName"]) == [job_id]


def test_a_lost_answer_is_looked_up_not_sent_again(account: BatchAccount) -> None:
    request = _setup(account)
    client = Flaky(account.batch, ["lose"])
    _submitter(client).submit(request)
    assert client.sent == 1


def test_a_throttled_call_is_sent_again(account: BatchAccount) -> None:
    request = _setup(account)
    client = Flaky(account.batch, ["refuse-429"] * 3)
    _submitter(client).submit(request)
    assert client.sent == 4 and len(_jobs_named(account, request["jobName"])) == 1


def test_a_bad_request_fails_at_once(account: BatchAccount) -> None:
    request = _setup(account)
    client = Flaky(account.batch, ["bad"])
    with pytest.raises(SubmitError, match="ClientException"):
        _submitter(client).submit(request)
    assert client.sent == 1


def test_rate_limiter_holds_the_rate() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = RateLimiter(40, clock=lambda: now[0], sleep=sleep)
    for _ in range(140):
        limiter.acquire()
    # A burst of 40 at once, then 40 per second: 100 more take 2.5 s.
    assert now[0] == pytest.approx(2.5, abs=0.05)
