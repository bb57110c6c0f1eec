"""The counting, fault-injecting proxy (sandbox/proxy.py) in front of an in-process moto.

The proxy is what end-to-end fault tests put between the plugin and moto to fail 30% of
Batch and S3 calls, and what benchmarks read API call counts from. These tests need no
podman: moto runs in this process (ThreadedMotoServer), boto3 talks to it through the proxy,
and assertions about what really happened go to moto directly, around the proxy.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import itertools
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError
from botocore.retries.standard import ExponentialBackoff

from snakemake_executor_plugin_awsbatch.sandbox.ports import free_port
from snakemake_executor_plugin_awsbatch.sandbox.proxy import MODULE, Faults, Proxy, classify
from tests.transfer.moto_s3 import moto_server

REGION = "us-east-1"
MiB = 1024 * 1024
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
# total_max_attempts=1: no retry at all, so each fault reaches the test as it was sent.
# (retries={"max_attempts": 1} would still allow one retry: botocore adds the first attempt.)
NO_RETRY = botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"})
RETRYING = botocore.config.Config(retries={"total_max_attempts": 12, "mode": "standard"})


def _auth(service: str) -> dict[str, str]:
    """A SigV4-shaped Authorization header: all the proxy reads is the credential scope."""
    return {
        "Authorization": (
            f"AWS4-HMAC-SHA256 Credential=AKID/20260101/{REGION}/{service}/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=00"
        )
    }


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def start_proxy(moto_url: str) -> Iterator[Callable[..., Proxy]]:
    started: list[Proxy] = []

    def start(**kwargs: Any) -> Proxy:
        started.append(Proxy(moto_url, **kwargs).start())
        return started[-1]

    yield start
    for proxy in started:
        proxy.stop()


def client(service: str, url: str, config: botocore.config.Config = NO_RETRY) -> Any:
    return boto3.client(service, endpoint_url=url, region_name=REGION, config=config, **CREDENTIALS)


_buckets = itertools.count()


@pytest.fixture
def bucket(moto_url: str) -> str:
    name = f"proxy-test-{next(_buckets)}"
    client("s3", moto_url).create_bucket(Bucket=name)
    return name


def _code(err: ClientError) -> tuple[str, int]:
    return err.response["Error"]["Code"], err.response["ResponseMetadata"]["HTTPStatusCode"]


# ---------------------------------------------------------------------------- classification


@pytest.mark.parametrize(
    ("method", "target", "headers", "body", "key"),
    [
        ("POST", "/v1/submitjob", _auth("batch"), b"{}", "batch:SubmitJob"),
        ("POST", "/v1/describejobs", _auth("batch"), b"{}", "batch:DescribeJobs"),
        ("GET", "/v1/tags/arn%3Aaws%3Ax", _auth("batch"), None, "batch:ListTagsForResource"),
        ("POST", "/v1/tags/arn%3Aaws%3Abatch%3Ax", _auth("batch"), b"{}", "batch:TagResource"),
        ("DELETE", "/v1/tags/arn%3Ax?tagKeys=a", _auth("batch"), None, "batch:UntagResource"),
        ("POST", "/", {**_auth("logs"), "X-Amz-Target": "Logs_20140328.GetLogEvents"}, b"{}",
         "logs:GetLogEvents"),
        ("POST", "/", {**_auth("cloudformation"),
                       "Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
         b"Action=DescribeStacks&Version=2010-05-15", "cloudformation:DescribeStacks"),
        ("GET", "/?Action=DescribeVpcs&Version=2016-11-15", _auth("ec2"), None, "ec2:DescribeVpcs"),
        ("GET", "/bkt/a/b?list-type=2", _auth("s3"), None, "s3:GetObject"),
        ("GET", "/bkt?list-type=2&prefix=a", _auth("s3"), None, "s3:ListObjectsV2"),
        ("GET", "/bkt?prefix=a", _auth("s3"), None, "s3:ListObjects"),
        ("GET", "/bkt?location", _auth("s3"), None, "s3:GetBucketLocation"),
        ("GET", "/", _auth("s3"), None, "s3:ListBuckets"),
        ("HEAD", "/bkt", _auth("s3"), None, "s3:HeadBucket"),
        ("PUT", "/bkt", _auth("s3"), b"", "s3:CreateBucket"),
        ("PUT", "/bkt/k", _auth("s3"), b"x", "s3:PutObject"),
        ("PUT", "/bkt/k", {**_auth("s3"), "x-amz-copy-source": "bkt/j"}, b"", "s3:CopyObject"),
        ("PUT", "/bkt/k?partNumber=1&uploadId=u", _auth("s3"), b"x", "s3:UploadPart"),
        ("PUT", "/bkt/k?partNumber=1&uploadId=u", {**_auth("s3"), "x-amz-copy-source": "b/j"},
         b"", "s3:UploadPartCopy"),
        ("PUT", "/bkt/k?tagging", _auth("s3"), b"<Tagging/>", "s3:PutObjectTagging"),
        ("GET", "/bkt/k?tagging", _auth("s3"), None, "s3:GetObjectTagging"),
        ("GET", "/bkt/k?uploadId=u", _auth("s3"), None, "s3:ListParts"),
        ("POST", "/bkt/k?uploads", _auth("s3"), b"", "s3:CreateMultipartUpload"),
        ("POST", "/bkt/k?uploadId=u", _auth("s3"), b"<x/>", "s3:CompleteMultipartUpload"),
        ("DELETE", "/bkt/k?uploadId=u", _auth("s3"), None, "s3:AbortMultipartUpload"),
        ("DELETE", "/bkt/k", _auth("s3"), None, "s3:DeleteObject"),
        ("POST", "/bkt?delete", _auth("s3"), b"<Delete/>", "s3:DeleteObjects"),
        ("GET", "/bkt?lifecycle", _auth("s3"), None, "s3:GetBucketLifecycleConfiguration"),
        ("GET", "/bkt/k?x-id=GetObject", _auth("s3"), None, "s3:GetObject"),
        # A presigned URL: the credential scope is in the query string.
        ("GET", "/bkt/k?X-Amz-Credential=AKID%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
         "&X-Amz-Signature=00", {}, None, "s3:GetObject"),
        ("GET", "/whatever", {}, None, "unknown:unknown"),
    ],
)  # fmt: skip
def test_classify(
    method: str, target: str, headers: dict[str, str], body: bytes | None, key: str
) -> None:
    assert classify(method, target, headers, body).key == key


# ---------------------------------------------------------------------------- counting


def test_counts_every_call_by_operation(start_proxy, bucket, moto_url) -> None:
    proxy = start_proxy()
    batch, s3, logs = (client(name, proxy.url) for name in ("batch", "s3", "logs"))
    before = time.time()

    batch.describe_job_queues()
    batch.describe_job_definitions()
    batch.register_job_definition(
        jobDefinitionName="counted",
        type="container",
        containerProperties={"image": "busybox", "vcpus": 1, "memory": 128},
    )
    s3.create_bucket(Bucket=f"{bucket}-new")
    s3.put_object(Bucket=bucket, Key="a/b c.txt", Body=b"hello")
    assert s3.get_object(Bucket=bucket, Key="a/b c.txt")["Body"].read() == b"hello"
    s3.head_object(Bucket=bucket, Key="a/b c.txt")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1
    upload = s3.create_multipart_upload(Bucket=bucket, Key="multi")["UploadId"]
    parts = [
        {
            "PartNumber": number,
            "ETag": s3.upload_part(
                Bucket=bucket, Key="multi", UploadId=upload, PartNumber=number, Body=data
            )["ETag"],
        }
        for number, data in ((1, b"1" * 5 * MiB), (2, b"2"))
    ]
    s3.complete_multipart_upload(
        Bucket=bucket, Key="multi", UploadId=upload, MultipartUpload={"Parts": parts}
    )
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a/b c.txt"}]})
    logs.create_log_group(logGroupName=f"/proxy/{bucket}")
    # The proxy's own paths are not calls.
    with urllib.request.urlopen(f"{proxy.url}/_proxy/stats") as answer:
        assert json.load(answer)["calls"]["s3:UploadPart"] == 2

    stats = proxy.stats()
    expected = {
        "batch:DescribeJobQueues": 1,
        "batch:DescribeJobDefinitions": 1,
        "batch:RegisterJobDefinition": 1,
        "s3:CreateBucket": 1,
        "s3:PutObject": 1,
        "s3:GetObject": 1,
        "s3:HeadObject": 1,
        "s3:ListObjectsV2": 1,
        "s3:CreateMultipartUpload": 1,
        "s3:UploadPart": 2,
        "s3:CompleteMultipartUpload": 1,
        "s3:DeleteObjects": 1,
        "logs:CreateLogGroup": 1,
    }
    assert stats["calls"] == expected
    assert stats["forwarded"] == expected
    assert stats["faults"] == {} and stats["throttled"] == {}
    assert set(stats["first"]) == set(stats["last"]) == set(expected)
    assert all(before <= stats["first"][k] <= stats["last"][k] <= time.time() for k in expected)
    # Bodies counted both ways: what went up to S3 and what came back.
    assert stats["bytes_up"]["s3:PutObject"] == len(b"hello")
    assert stats["bytes_up"]["s3:UploadPart"] == 5 * MiB + 1
    assert stats["bytes_down"]["s3:GetObject"] == len(b"hello")
    assert stats["bytes_down"].get("s3:HeadObject", 0) == 0
    json.dumps(stats)
    # The multipart upload really happened, in moto.
    head = client("s3", moto_url).head_object(Bucket=bucket, Key="multi")
    assert head["ContentLength"] == 5 * MiB + 1

    proxy.reset()
    assert proxy.stats() == {kind: {} for kind in stats}


# ---------------------------------------------------------------------------- faults


def test_reject_answers_batch_errors_without_forwarding(start_proxy, moto_url) -> None:
    proxy = start_proxy(faults=Faults(rate=1.0, mode="reject", seed=1))
    batch = client("batch", proxy.url)
    seen = Counter()
    for _ in range(15):
        with pytest.raises(ClientError) as caught:
            batch.describe_job_queues()
        seen[_code(caught.value)] += 1
    # All three, each parsed by botocore with the status AWS sends it with.
    assert set(seen) == {
        ("TooManyRequestsException", 429),
        ("ServerException", 500),
        ("ServiceUnavailable", 503),
    }
    with pytest.raises(ClientError):
        batch.register_job_definition(
            jobDefinitionName="rejected",
            type="container",
            containerProperties={"image": "busybox", "vcpus": 1, "memory": 128},
        )
    direct = client("batch", moto_url)
    assert direct.describe_job_definitions(jobDefinitionName="rejected")["jobDefinitions"] == []
    stats = proxy.stats()
    assert stats["faults"] == {"batch:DescribeJobQueues": 15, "batch:RegisterJobDefinition": 1}
    assert stats["forwarded"] == {}


def test_reject_answers_s3_errors_without_forwarding(start_proxy, bucket, moto_url) -> None:
    proxy = start_proxy(faults=Faults(rate=1.0, mode="reject", seed=2))
    s3 = client("s3", proxy.url)
    seen = set()
    for number in range(8):
        with pytest.raises(ClientError) as caught:
            s3.put_object(Bucket=bucket, Key=f"k{number}", Body=b"never stored")
        seen.add(_code(caught.value))
    assert seen == {("SlowDown", 503), ("InternalError", 500)}
    # HEAD answers have no body: botocore can only go by the status.
    with pytest.raises(ClientError) as caught:
        s3.head_object(Bucket=bucket, Key="k0")
    assert _code(caught.value) in {("503", 503), ("500", 500)}

    assert client("s3", moto_url).list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    stats = proxy.stats()
    assert stats["faults"] == {"s3:PutObject": 8, "s3:HeadObject": 1}
    assert stats["forwarded"] == {}


def test_lose_does_the_work_and_answers_500(start_proxy, bucket, moto_url) -> None:
    proxy = start_proxy(faults=Faults(rate=1.0, mode="lose"))
    with pytest.raises(ClientError) as caught:
        client("s3", proxy.url).put_object(Bucket=bucket, Key="lost", Body=b"stored anyway")
    assert _code(caught.value) == ("InternalError", 500)
    stored = client("s3", moto_url).get_object(Bucket=bucket, Key="lost")["Body"].read()
    assert stored == b"stored anyway"
    stats = proxy.stats()
    assert stats["forwarded"] == stats["faults"] == {"s3:PutObject": 1}


def test_faults_spare_other_services_and_the_proxy_paths(start_proxy, bucket) -> None:
    proxy = start_proxy(faults=Faults(rate=1.0, services=frozenset({"batch"})))
    client("s3", proxy.url).put_object(Bucket=bucket, Key="fine", Body=b"x")
    client("logs", proxy.url).describe_log_groups()
    with urllib.request.urlopen(f"{proxy.url}/_proxy/stats") as answer:
        assert json.load(answer)["faults"] == {}
    request = urllib.request.Request(f"{proxy.url}/_proxy/reset", method="POST")
    with urllib.request.urlopen(request) as answer:
        assert answer.status == 200
    assert proxy.stats()["calls"] == {}


class _Quick(BaseHTTPRequestHandler):
    """An upstream that answers every call at once: moto takes ~7 ms a call, too slow here."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # or each answer's body waits ~40 ms for a delayed ACK

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def do_GET(self) -> None:
        # A body of unknown length, as a streaming server sends it.
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for piece in (b"one,", b"two,", b"three" * 1000):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def quick_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Quick)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _fault_positions(upstream: str, faults: Faults, calls: int) -> list[int]:
    """Which of `calls` raw DescribeJobQueues requests (one kept-alive connection) failed."""
    with Proxy(upstream, faults=faults) as proxy:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port)
        headers = {**_auth("batch"), "Content-Type": "application/json"}
        failed = []
        for number in range(calls):
            conn.request("POST", "/v1/describejobqueues", body=b"{}", headers=headers)
            answer = conn.getresponse()
            answer.read()
            if answer.status != 200:
                failed.append(number)
        conn.close()
        assert proxy.stats()["faults"] == {"batch:DescribeJobQueues": len(failed)}
        assert proxy.stats()["forwarded"] == {"batch:DescribeJobQueues": calls - len(failed)}
    return failed


def test_fault_rate_is_kept_and_reproducible(quick_url) -> None:
    first = _fault_positions(quick_url, Faults(rate=0.3, seed=7), 1000)
    again = _fault_positions(quick_url, Faults(rate=0.3, seed=7), 1000)
    other = _fault_positions(quick_url, Faults(rate=0.3, seed=8), 1000)
    assert 250 <= len(first) <= 350
    assert first == again
    assert first != other


def test_botocore_retries_ride_through_mixed_faults(
    start_proxy, bucket, moto_url, monkeypatch
) -> None:
    # What the end-to-end fault tests rely on: every injected error is one botocore retries.
    # No back-off sleeps (up to a second each at the first retry) to keep the test quick.
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.0)
    proxy = start_proxy(faults=Faults(rate=0.3, mode="mixed", seed=3))
    s3, batch = client("s3", proxy.url, RETRYING), client("batch", proxy.url, RETRYING)
    for number in range(30):
        s3.put_object(Bucket=bucket, Key=f"k{number}", Body=b"%d" % number)
        assert s3.get_object(Bucket=bucket, Key=f"k{number}")["Body"].read() == b"%d" % number
        batch.describe_job_queues()
    stats = proxy.stats()
    assert sum(stats["faults"].values()) > 10
    assert stats["calls"]["s3:PutObject"] > 30
    assert client("s3", moto_url).list_objects_v2(Bucket=bucket)["KeyCount"] == 30


# ---------------------------------------------------------------------------- rate limits


def test_rate_limit_throttles_past_the_burst(start_proxy) -> None:
    proxy = start_proxy(limits={"DescribeJobQueues": 20})
    batch = client("batch", proxy.url)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def call_ten() -> None:
        for _ in range(10):
            try:
                batch.describe_job_queues()
                outcome = "allowed"
            except ClientError as err:
                assert _code(err) == ("TooManyRequestsException", 429)
                outcome = "throttled"
            with lock:
                outcomes[outcome] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=call_ten) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started

    # A burst of 20, then 20 a second refilled while the calls went on.
    assert 20 <= outcomes["allowed"] <= 20 + 20 * elapsed + 1
    assert outcomes["throttled"] == 60 - outcomes["allowed"] > 0
    stats = proxy.stats()
    assert stats["throttled"]["batch:DescribeJobQueues"] == outcomes["throttled"]
    assert stats["forwarded"]["batch:DescribeJobQueues"] == outcomes["allowed"]


# ---------------------------------------------------------------------------- transport


def test_large_object_round_trip_is_byte_identical(start_proxy, bucket) -> None:
    proxy = start_proxy()
    s3 = client("s3", proxy.url)
    sent_headers: list[dict[str, str]] = []
    s3.meta.events.register(
        "before-send.s3.PutObject", lambda request, **_: sent_headers.append(dict(request.headers))
    )
    data = os.urandom(40 * MiB)
    # A file-like body: botocore then sends Expect: 100-continue and waits for the answer.
    s3.put_object(Bucket=bucket, Key="big", Body=io.BytesIO(data))
    assert sent_headers[0].get("Expect") in (b"100-continue", "100-continue")

    got = s3.get_object(Bucket=bucket, Key="big")
    assert got["ContentLength"] == len(data)
    assert hashlib.sha256(got["Body"].read()).digest() == hashlib.sha256(data).digest()
    ranged = s3.get_object(Bucket=bucket, Key="big", Range="bytes=1000-3000999")
    assert ranged["ContentRange"] == f"bytes 1000-3000999/{len(data)}"
    assert ranged["Body"].read() == data[1000:3001000]


def test_expect_100_continue_is_answered_before_the_body(start_proxy, bucket, moto_url) -> None:
    proxy = start_proxy()
    body = b"z" * (2 * MiB)
    head = (
        f"PUT /{bucket}/expected HTTP/1.1\r\nHost: 127.0.0.1:{proxy.port}\r\n"
        f"Authorization: {_auth('s3')['Authorization']}\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(head.encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n")
        sock.sendall(body)
        assert sock.recv(100).startswith(b"HTTP/1.1 200 ")
    assert client("s3", moto_url).head_object(Bucket=bucket, Key="expected")["ContentLength"] == (
        len(body)
    )


def test_chunked_request_body_is_forwarded_whole(start_proxy, bucket, moto_url) -> None:
    proxy = start_proxy()
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port)
    pieces = [b"first,", b"second,", b"x" * 100_000]
    conn.request("PUT", f"/{bucket}/chunked", body=iter(pieces), headers=_auth("s3"))
    answer = conn.getresponse()
    answer.read()
    assert answer.status == 200
    stored = client("s3", moto_url).get_object(Bucket=bucket, Key="chunked")["Body"].read()
    assert stored == b"".join(pieces)
    assert proxy.stats()["forwarded"] == {"s3:PutObject": 1}


def test_chunked_answer_is_relayed_chunked(quick_url) -> None:
    with Proxy(quick_url) as proxy:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port)
        for _ in range(2):  # and the connection stays usable after it
            conn.request("GET", "/stream", headers=_auth("s3"))
            answer = conn.getresponse()
            assert answer.getheader("Transfer-Encoding") == "chunked"
            assert answer.read() == b"one,two," + b"three" * 1000
        conn.close()


def test_stop_closes_kept_alive_connections(start_proxy) -> None:
    proxy = start_proxy()
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    conn.request("GET", "/_proxy/stats")
    conn.getresponse().read()
    proxy.stop()
    with pytest.raises((http.client.HTTPException, OSError)):
        conn.request("GET", "/_proxy/stats")
        conn.getresponse().read()
    conn.close()


def test_unreachable_moto_is_502() -> None:
    with Proxy(f"http://127.0.0.1:{free_port()}") as proxy:
        with pytest.raises(ClientError) as caught:
            client("batch", proxy.url).describe_job_queues()
        assert _code(caught.value) == ("BadGateway", 502)
        assert proxy.stats()["calls"] == {"batch:DescribeJobQueues": 1}
        assert proxy.stats()["forwarded"] == {}


# ---------------------------------------------------------------------------- command line


def test_command_line_serves_counts_and_writes_stats_on_sigterm(moto_url, tmp_path) -> None:
    stats_file = tmp_path / "stats.json"
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", MODULE, "--upstream", moto_url, "--fault-rate", "0"),
            *("--limit", "SubmitJob=50", "--stats-file", str(stats_file)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = _read_line(process, timeout=20)
        assert line.startswith("proxy listening on http://127.0.0.1:"), line
        url = line.split()[-1]
        client("batch", url).describe_job_queues()
        with urllib.request.urlopen(f"{url}/_proxy/stats") as answer:
            assert json.load(answer)["calls"] == {"batch:DescribeJobQueues": 1}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert json.loads(stats_file.read_text())["forwarded"] == {"batch:DescribeJobQueues": 1}


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError(f"no line from the proxy within {timeout} s")
    return process.stdout.readline().strip() or (process.stderr.read() if process.stderr else "")
