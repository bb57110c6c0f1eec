"""A counting, fault-injecting HTTP proxy in front of the sandbox's moto server.

Two uses. End-to-end fault tests make a share of Batch and S3 calls fail, either before the
work is done ("reject": throttling, 500, 503) or after it ("lose": moto did the work but the
client gets a 500), to prove the plugin survives both. Benchmarks count API calls per
operation at the endpoint, the one place where competing plugins can be measured alike.

boto3 clients reach it through AWS_ENDPOINT_URL; it forwards to moto over plain HTTP on
127.0.0.1. Calls are told apart the way AWS itself would: the service from the SigV4
credential scope, the operation from X-Amz-Target, Action= or the REST path as botocore's
service models describe it. S3 must be path-style (botocore's choice for an IP endpoint).

    with Proxy("http://127.0.0.1:5000", faults=Faults(rate=0.3)) as proxy:
        ...  # AWS_ENDPOINT_URL=proxy.url
        proxy.stats()["calls"]["batch:SubmitJob"]

As a process (benchmarks): `python -m snakemake_executor_plugin_awsbatch.sandbox.proxy
--upstream URL [--port N] [--fault-rate R] [--fault-mode reject|lose|mixed]
[--fault-services batch,s3] [--seed N] [--limit SubmitJob=50 ...] [--stats-file PATH]`.
It answers GET /_proxy/stats and POST /_proxy/reset itself.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.client
import json
import os
import random
import re
import select
import signal
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

MODULE = "snakemake_executor_plugin_awsbatch.sandbox.proxy"
HOST = "127.0.0.1"
MODES = ("reject", "lose", "mixed")
CONTROL = "/_proxy/"
# Request bodies up to this size are read whole (so a stale upstream connection can be
# retried, and a Query API's Action can be read from the form); larger ones are streamed.
BUFFER_LIMIT = 1024 * 1024
CHUNK = 1024 * 1024
# moto answers within seconds; a hung moto should show as a client timeout, not hang forever.
UPSTREAM_TIMEOUT = 600.0
# RFC 9110 7.6.1; Expect is answered here (100 Continue) and so not passed on.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)


@dataclass(frozen=True)
class Faults:
    """Which calls fail, and how. The same seed and the same calls fail the same positions."""

    rate: float = 0.0  # share (0..1) of matching calls that fail
    # "reject": an error answer without forwarding; "lose": forwarded (moto does the work),
    # then a 500 instead of moto's answer; "mixed": each fault picks one at random.
    mode: str = "reject"
    services: frozenset[str] = frozenset({"batch", "s3"})
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate {self.rate} is not between 0 and 1")
        if self.mode not in MODES:
            raise ValueError(f"fault mode {self.mode!r} is not one of {', '.join(MODES)}")
        object.__setattr__(self, "services", frozenset(self.services))


# ---------------------------------------------------------------------------- classification


@dataclass(frozen=True)
class Call:
    """What a request is: service and operation, and the error dialect its client parses."""

    service: str
    operation: str
    style: str  # "json" (JSON and REST-JSON), "s3", "query" (and REST-XML), "ec2"

    @property
    def key(self) -> str:
        return f"{self.service}:{self.operation}"


_SCOPE = re.compile(r"Credential=[^/,\s]*/\d{8}/[^/,\s]+/([^/,\s]+)/aws4_request")
_RPC_V2 = re.compile(r"/service/[^/]+/operation/([^/]+)$")


def classify(
    method: str, target: str, headers: Mapping[str, str], body: bytes | None = None
) -> Call:
    """The call a request makes. body: the request body if read whole (for Action=)."""
    lower = {k.lower(): v for k, v in headers.items()}
    path, _, raw_query = target.partition("?")
    query = parse_qs(raw_query, keep_blank_values=True)
    service = _service(lower, query)
    if service == "s3":
        return Call("s3", _s3_operation(method, path, query, lower), "s3")
    if amz_target := lower.get("x-amz-target"):
        return Call(service, amz_target.rpartition(".")[2], "json")
    if action := _action(query, lower, body):
        return Call(service, action, "ec2" if service == "ec2" else "query")
    if rpc := _RPC_V2.match(path):
        return Call(service, rpc[1], "json")
    protocol, name = _match_rest(service, method, path, query)
    if name:
        return Call(service, name, "json" if protocol == "rest-json" else "query")
    return Call(service, "unknown", "json")


def _service(headers: Mapping[str, str], query: Mapping[str, list[str]]) -> str:
    if scope := _SCOPE.search(headers.get("authorization", "")):
        return scope[1]
    # A presigned URL carries its credential scope in the query string instead.
    parts = query.get("X-Amz-Credential", [""])[0].split("/")
    return parts[3] if len(parts) == 5 else "unknown"


def _action(
    query: Mapping[str, list[str]], headers: Mapping[str, str], body: bytes | None
) -> str | None:
    if "Action" in query:
        return query["Action"][0]
    content_type = headers.get("content-type", "")
    if body and content_type.startswith("application/x-www-form-urlencoded"):
        form = parse_qs(body.decode("utf-8", "replace"))
        if "Action" in form:
            return form["Action"][0]
    return None


def _s3_operation(
    method: str, path: str, query: Mapping[str, list[str]], headers: Mapping[str, str]
) -> str:
    # Newer AWS SDKs name the operation themselves.
    if (named := query.get("x-id", [""])[0]) and named in _operation_names("s3"):
        return named
    _, name = _match_rest("s3", method, path, query)
    # Operations that share method, path and query markers in the model and differ only by
    # parameters or headers.
    upload = "uploadId" in query
    if name in ("PutObject", "CopyObject", "UploadPart", "UploadPartCopy"):
        part = upload and "partNumber" in query
        copy = "x-amz-copy-source" in headers
        return {
            (True, True): "UploadPartCopy",
            (True, False): "UploadPart",
            (False, True): "CopyObject",
            (False, False): "PutObject",
        }[(part, copy)]
    if name in ("GetObject", "ListParts"):
        return "ListParts" if upload else "GetObject"
    if name in ("DeleteObject", "AbortMultipartUpload"):
        return "AbortMultipartUpload" if upload else "DeleteObject"
    return name or "unknown"


@dataclass(frozen=True)
class _Route:
    name: str
    path: re.Pattern[str]
    markers: tuple[tuple[str, str | None], ...]  # query keys (and values) the URI requires
    rank: tuple[int, int, bool]  # more markers, more fixed path text, not deprecated: better


@dataclass(frozen=True)
class _Routes:
    protocol: str
    by_method: dict[str, list[_Route]] = field(default_factory=dict)


_routes_lock = threading.Lock()


@functools.cache
def _botocore_session() -> Any:
    import botocore.session

    return botocore.session.get_session()


@functools.cache
def _routes(service: str) -> _Routes:
    """The REST routes of a service from botocore's model (empty if none or not REST)."""
    import botocore.exceptions

    # botocore's loader is not meant for concurrent first loads.
    with _routes_lock:
        try:
            model = _botocore_session().get_service_model(service)
        except botocore.exceptions.BotoCoreError:
            return _Routes("")
    routes = _Routes(model.protocol)
    if model.protocol not in ("rest-json", "rest-xml"):
        return routes
    for name in model.operation_names:
        operation = model.operation_model(name)
        uri = operation.http.get("requestUri", "/")
        template, _, marker_text = uri.partition("?")
        pattern, literal = _template_regex(template)
        markers = tuple(
            (key, value if eq else None)
            for key, eq, value in (item.partition("=") for item in marker_text.split("&") if item)
        )
        method = operation.http.get("method", "POST")
        rank = (len(markers), literal, not operation.deprecated)
        routes.by_method.setdefault(method, []).append(_Route(name, pattern, markers, rank))
    return routes


def _template_regex(template: str) -> tuple[re.Pattern[str], int]:
    """`/{Bucket}/{Key+}` -> a regex for the raw path, and the count of fixed characters."""
    parts = re.split(r"(\{[^}]+\})", template)
    regex = []
    literal = 0
    for part in parts:
        if part.startswith("{"):
            # Greedy labels ({Key+}) span slashes; others are percent-encoded by botocore.
            regex.append(".+" if part.endswith("+}") else "[^/]+")
        else:
            regex.append(re.escape(part))
            literal += len(part)
    if not template.endswith("/"):
        regex.append("/?")
    return re.compile("".join(regex)), literal


@functools.cache
def _operation_names(service: str) -> frozenset[str]:
    return frozenset(
        route.name for routes in _routes(service).by_method.values() for route in routes
    )


def _match_rest(
    service: str, method: str, path: str, query: Mapping[str, list[str]]
) -> tuple[str, str | None]:
    routes = _routes(service)
    best: _Route | None = None
    for route in routes.by_method.get(method, ()):
        if not route.path.fullmatch(path):
            continue
        if not all(
            key in query and (value is None or value in query[key]) for key, value in route.markers
        ):
            continue
        # Strictly better only: on a tie the model's first operation wins.
        if best is None or route.rank > best.rank:
            best = route
    return routes.protocol, best.name if best else None


# ---------------------------------------------------------------------------- error answers

_Error = tuple[int, str, str]  # status, code, message

_THROTTLE: dict[str, _Error] = {
    "json": (429, "TooManyRequestsException", "Too Many Requests"),
    "s3": (503, "SlowDown", "Please reduce your request rate."),
    "query": (400, "Throttling", "Rate exceeded"),
    "ec2": (503, "RequestLimitExceeded", "Request limit exceeded."),
}
_SERVER: dict[str, _Error] = {
    "json": (500, "InternalFailure", "The request processing has failed."),
    "s3": (500, "InternalError", "We encountered an internal error. Please try again."),
    "query": (500, "InternalFailure", "The request processing has failed."),
    "ec2": (500, "InternalError", "An internal error has occurred."),
}
_UNAVAILABLE: dict[str, _Error] = {
    "json": (503, "ServiceUnavailable", "Service Unavailable"),
    "query": (503, "ServiceUnavailable", "Service Unavailable"),
    "ec2": (503, "Unavailable", "The server is overloaded and cannot handle the request."),
}


def throttle_error(call: Call) -> _Error:
    """What a rate limit answers: the service's own throttling error (429 for Batch)."""
    return _THROTTLE[call.style]


def server_error(call: Call) -> _Error:
    if call.service == "batch":  # Batch names its 500 ServerException
        return (500, "ServerException", "Internal Server Error")
    return _SERVER[call.style]


def reject_errors(call: Call) -> tuple[_Error, ...]:
    """The errors "reject" mode picks from: all are ones botocore retries."""
    if call.style == "s3":
        return (_THROTTLE["s3"], _SERVER["s3"])
    return (_THROTTLE[call.style], server_error(call), _UNAVAILABLE[call.style])


def render_error(call: Call, error: _Error) -> tuple[list[tuple[str, str]], bytes]:
    """Headers and body of an error answer, as the service would send it."""
    _, code, message = error
    request_id = str(uuid.uuid4())
    code_x, message_x = escape(code), escape(message)
    if call.style == "s3":
        text = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code_x}</Code><Message>{message_x}</Message>"
            f"<RequestId>{request_id}</RequestId><HostId>{request_id}</HostId></Error>"
        )
        return [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)], (
            text.encode()
        )
    if call.style == "ec2":
        text = (
            f"<Response><Errors><Error><Code>{code_x}</Code><Message>{message_x}</Message>"
            f"</Error></Errors><RequestID>{request_id}</RequestID></Response>"
        )
        return [("Content-Type", "text/xml")], text.encode()
    if call.style == "query":
        kind = "Sender" if error[0] < 500 else "Receiver"
        text = (
            f"<ErrorResponse><Error><Type>{kind}</Type><Code>{code_x}</Code>"
            f"<Message>{message_x}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        return [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)], text.encode()
    body = json.dumps({"__type": code, "message": message}).encode()
    return [
        ("Content-Type", "application/json"),
        ("x-amzn-ErrorType", code),
        ("x-amzn-RequestId", request_id),
    ], body


# ---------------------------------------------------------------------------- the proxy


class _Bucket:
    """Token bucket: rate tokens a second, holding at most max(rate, 1)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(rate, 1.0)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass(frozen=True)
class _Verdict:
    action: str  # "forward", "throttle", "reject", "lose"
    error: _Error | None = None


_FORWARD = _Verdict("forward")
# bytes_up, bytes_down: request and response bodies of forwarded calls (benchmarks).
_KINDS = ("calls", "forwarded", "faults", "throttled", "bytes_up", "bytes_down")


class Proxy:
    """The proxy: counts every call, rate-limits and fails some as configured."""

    def __init__(
        self,
        upstream: str,
        *,
        port: int = 0,
        faults: Faults = Faults(),
        limits: Mapping[str, float] | None = None,
        agents: Sequence[str] = (),
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream {upstream!r} is not an http://host:port URL")
        self.upstream = upstream
        self.upstream_address = (parts.hostname, parts.port or 80)
        self.faults = faults
        # limits: "SubmitJob" (any service) or "batch:SubmitJob" -> calls per second.
        self.limits = dict(limits or {})
        for name, rate in self.limits.items():
            if not rate > 0:
                raise ValueError(f"limit for {name} must be > 0 calls a second, not {rate}")
        # User-Agent marks whose calls are also counted apart (stats()["agents"]), e.g. the
        # job-side runner's, to tell the jobs' calls from the submitting side's.
        self.agents = tuple(agents)
        self._by_agent: dict[str, dict[str, Counter[str]]] = {
            mark: {"calls": Counter(), "faults": Counter()} for mark in self.agents
        }
        self._port = port
        self._lock = threading.Lock()
        self._random = random.Random(faults.seed)
        self._buckets = {name: _Bucket(rate) for name, rate in self.limits.items()}
        self._counts: dict[str, Counter[str]] = {kind: Counter() for kind in _KINDS}
        self._first: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._clients: set[socket.socket] = set()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> Proxy:
        if self._server is not None:
            return self
        # Load the models now, so the first Batch and S3 calls are not the slow ones.
        _operation_names("batch")
        _operation_names("s3")
        self._server = _Server((HOST, self._port), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"proxy-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        # Kept-alive client connections would otherwise go on being served by their threads.
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            stats: dict[str, Any] = {
                kind: dict(sorted(self._counts[kind].items())) for kind in _KINDS
            }
            stats["first"] = dict(sorted(self._first.items()))
            stats["last"] = dict(sorted(self._last.items()))
            stats["agents"] = {
                mark: {kind: dict(sorted(c.items())) for kind, c in counts.items()}
                for mark, counts in self._by_agent.items()
            }
        return stats

    def reset(self) -> None:
        """Zero the counters (rate-limit buckets and the fault sequence carry on)."""
        with self._lock:
            for counter in self._counts.values():
                counter.clear()
            for counts in self._by_agent.values():
                for counter in counts.values():
                    counter.clear()
            self._first.clear()
            self._last.clear()

    # -- used by the request handler

    def _judge(self, call: Call, user_agent: str = "") -> _Verdict:
        key = call.key
        now = time.time()
        marks = [m for m in self.agents if m in user_agent]
        with self._lock:
            self._counts["calls"][key] += 1
            for mark in marks:
                self._by_agent[mark]["calls"][key] += 1
            self._first.setdefault(key, now)
            self._last[key] = now
            bucket = self._buckets.get(key) or self._buckets.get(call.operation)
            if bucket is not None and not bucket.take():
                self._counts["throttled"][key] += 1
                return _Verdict("throttle", throttle_error(call))
            faults = self.faults
            if faults.rate <= 0 or call.service not in faults.services:
                return _FORWARD
            if self._random.random() >= faults.rate:
                return _FORWARD
            self._counts["faults"][key] += 1
            for mark in marks:
                self._by_agent[mark]["faults"][key] += 1
            mode = faults.mode
            if mode == "mixed":
                mode = self._random.choice(("reject", "lose"))
            if mode == "lose":
                return _Verdict("lose", server_error(call))
            return _Verdict("reject", self._random.choice(reject_errors(call)))

    def _count_forwarded(self, call: Call) -> None:
        with self._lock:
            self._counts["forwarded"][call.key] += 1

    def _count_bytes(self, call: Call, up: int, down: int) -> None:
        with self._lock:
            self._counts["bytes_up"][call.key] += up
            self._counts["bytes_down"][call.key] += down

    def _track(self, client: socket.socket, live: bool) -> None:
        with self._lock:
            if live:
                self._clients.add(client)
            else:
                self._clients.discard(client)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Many concurrent clients (parallel uploads) should queue, not be refused.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[_Handler], proxy: Proxy) -> None:
        self.proxy = proxy
        super().__init__(address, handler)


class _UpstreamDown(Exception):
    pass


class _ClientGone(ConnectionError):
    """The client closed its connection before the whole request body arrived."""


class _Body:
    """A request body of known length, read from the client as the upstream takes it."""

    def __init__(self, rfile: Any, length: int) -> None:
        self.rfile = rfile
        self.remaining = length

    def __iter__(self) -> Iterator[bytes]:
        while self.remaining > 0:
            data = self.rfile.read(min(CHUNK, self.remaining))
            if not data:
                raise _ClientGone("inside the request body")
            self.remaining -= len(data)
            yield data

    def drain(self) -> None:
        for _ in self:
            pass


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1: keep-alive for botocore's connection pool, and 100 Continue for Expect.
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small answers must not wait for delayed ACKs
    server_version = "sandbox-proxy"
    upstream: http.client.HTTPConnection | None = None

    @property
    def proxy(self) -> Proxy:
        return cast(_Server, self.server).proxy

    def setup(self) -> None:
        super().setup()
        self.proxy._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._drop_upstream()
            self.proxy._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would cost more than the request

    def _handle(self) -> None:
        try:
            self._serve()
        except (ConnectionError, TimeoutError, http.client.HTTPException):
            # The client or moto went away mid-answer: nothing sensible left to send.
            self.close_connection = True
            self._drop_upstream()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle

    def _serve(self) -> None:
        target = self.path
        if "://" in target.partition("?")[0]:  # absolute-form, as sent to a forward proxy
            parts = urlsplit(target)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        body = self._read_body()
        if body is None:
            return
        if target.startswith(CONTROL):
            if isinstance(body, _Body):
                body.drain()
            self._control(target)
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        call = classify(self.command, target, headers, body if isinstance(body, bytes) else None)
        verdict = self.proxy._judge(call, headers.get("user-agent", ""))
        if verdict.action in ("throttle", "reject"):
            if isinstance(body, _Body):
                body.drain()  # the connection stays usable for the client's next call
            assert verdict.error is not None
            self._error(call, verdict.error)
            return
        up = len(body) if isinstance(body, bytes) else body.remaining
        try:
            response = self._forward(target, body)
        except _UpstreamDown as err:
            if isinstance(body, _Body) and body.remaining:
                self.close_connection = True  # the rest of the body is still on the wire
            self._error(call, (502, "BadGateway", f"sandbox proxy: {self.proxy.upstream}: {err}"))
            return
        self.proxy._count_forwarded(call)
        try:
            if verdict.action == "lose":
                response.read()  # moto's answer is dropped; the connection stays reusable
                assert verdict.error is not None
                self._error(call, verdict.error)
            else:
                self.proxy._count_bytes(call, up, self._relay(response))
        finally:
            response.close()

    def _read_body(self) -> bytes | _Body | None:
        """The request body: bytes if small or chunked, else a stream; None if malformed."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self.send_error(400, "bad Content-Length")
            return None
        if length > BUFFER_LIMIT:
            return _Body(self.rfile, length)
        data = self.rfile.read(length) if length else b""
        if len(data) < length:
            raise _ClientGone("inside the request body")
        return data

    def _read_chunked(self) -> bytes:
        # Rare from AWS SDKs; decoded whole and sent to moto with a Content-Length.
        parts: list[bytes] = []
        while True:
            line = self.rfile.readline(65537)
            if not line:
                raise _ClientGone("inside a chunked body")
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers: dropped
                return b"".join(parts)
            data = self.rfile.read(size)
            if len(data) < size:
                raise _ClientGone("inside a chunked body")
            parts.append(data)
            self.rfile.readline(65537)

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's upstream connection, and whether it is reused (may have gone stale)."""
        conn = self.upstream
        if conn is not None and conn.sock is not None and _readable(conn.sock):
            # Readable while idle: moto closed it (or sent junk). Start afresh.
            self._drop_upstream()
            conn = None
        if conn is None:
            host, port = self.proxy.upstream_address
            conn = self.upstream = http.client.HTTPConnection(host, port, timeout=UPSTREAM_TIMEOUT)
        return conn, conn.sock is not None

    def _drop_upstream(self) -> None:
        conn, self.upstream = self.upstream, None
        if conn is not None:
            conn.close()

    def _forward(self, target: str, body: bytes | _Body) -> http.client.HTTPResponse:
        dropped = {token.strip().lower() for token in self.headers.get("Connection", "").split(",")}
        headers = [
            (name, value)
            for name, value in self.headers.items()
            if name.lower() not in HOP_BY_HOP and name.lower() not in dropped
        ]
        if isinstance(body, bytes) and "chunked" in self.headers.get("Transfer-Encoding", ""):
            headers = [(n, v) for n, v in headers if n.lower() != "content-length"]
            headers.append(("Content-Length", str(len(body))))
        for attempt in (1, 2):
            conn, reused = self._connection()
            try:
                # Host and Accept-Encoding exactly as the client sent them (SigV4 signs Host).
                conn.putrequest(self.command, target, skip_host=True, skip_accept_encoding=True)
                for name, value in headers:
                    conn.putheader(name, value)
                if isinstance(body, bytes):
                    conn.endheaders(body or None)
                else:
                    conn.endheaders()
                    for data in body:
                        conn.send(data)
                return conn.getresponse()
            except _ClientGone:
                raise
            except ConnectionError as err:
                self._drop_upstream()
                # A kept-alive connection may have closed under us: retry once on a new one,
                # if the body can be sent again.
                if attempt == 2 or not reused or not isinstance(body, bytes):
                    raise _UpstreamDown(str(err) or type(err).__name__) from err
            except (OSError, http.client.HTTPException) as err:
                self._drop_upstream()
                raise _UpstreamDown(str(err) or type(err).__name__) from err
        raise AssertionError("unreachable")

    def _relay(self, response: http.client.HTTPResponse) -> int:
        """Send moto's answer on; returns the size of its body."""
        dropped = {
            token.strip().lower() for token in (response.getheader("Connection") or "").split(",")
        }
        # send_response_only: moto's own Date and Server go through instead of ours.
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP and name.lower() not in dropped:
                self.send_header(name, value)
        no_body = self.command == "HEAD" or response.status in (204, 304) or response.status < 200
        chunked = not no_body and response.getheader("Content-Length") is None
        if chunked and self.request_version != "HTTP/1.1":
            chunked = False
            self.close_connection = True  # HTTP/1.0: the end of the body is the end of the line
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if no_body:
            response.read()
            return 0
        # Streamed: a GetObject of hundreds of MiB is never held whole.
        buffer = memoryview(bytearray(CHUNK))
        sent = 0
        while n := response.readinto(buffer):
            if chunked:
                self.wfile.write(b"%x\r\n" % n)
            self.wfile.write(buffer[:n])
            if chunked:
                self.wfile.write(b"\r\n")
            sent += n
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
        return sent

    def _error(self, call: Call, error: _Error) -> None:
        headers, body = render_error(call, error)
        self._answer(error[0], headers, body)

    def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if self.command == "HEAD":
            body = b""  # HEAD answers carry no body; botocore reads the status alone
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _control(self, target: str) -> None:
        path = target.partition("?")[0]
        json_type = [("Content-Type", "application/json")]
        if path == CONTROL + "stats" and self.command in ("GET", "HEAD"):
            self._answer(200, json_type, json.dumps(self.proxy.stats()).encode())
        elif path == CONTROL + "reset" and self.command == "POST":
            self.proxy.reset()
            self._answer(200, json_type, b'{"reset": true}')
        else:
            self._answer(404, json_type, b'{"error": "GET /_proxy/stats or POST /_proxy/reset"}')


def _readable(sock: socket.socket) -> bool:
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


# ---------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n")[0])
    parser.add_argument("--upstream", required=True, help="moto's URL, http://127.0.0.1:PORT")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: free)")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of calls failed")
    parser.add_argument("--fault-mode", choices=MODES, default="reject")
    parser.add_argument("--fault-services", default="batch,s3", help="comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="OPERATION=RATE",
        help="calls a second for an operation, e.g. SubmitJob=50 (repeatable)",
    )
    parser.add_argument("--stats-file", type=Path, help="where stats JSON goes on exit")
    args = parser.parse_args(argv)

    limits: dict[str, float] = {}
    for item in args.limit:
        name, eq, rate = item.partition("=")
        try:
            limits[name] = float(rate)
        except ValueError:
            eq = ""
        if not eq or not name:
            parser.error(f"--limit {item!r} is not OPERATION=RATE")
    try:
        faults = Faults(
            rate=args.fault_rate,
            mode=args.fault_mode,
            services=frozenset(s.strip() for s in args.fault_services.split(",") if s.strip()),
            seed=args.seed,
        )
        proxy = Proxy(args.upstream, port=args.port, faults=faults, limits=limits)
    except ValueError as err:
        parser.error(str(err))

    stopping = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        proxy.start()
    except OSError as err:
        print(f"proxy: cannot listen on {HOST}:{args.port}: {err.strerror}", file=sys.stderr)
        return 1
    print(f"proxy listening on {proxy.url}", flush=True)
    try:
        # A timed wait, so the signal handler's set() is seen promptly.
        while not stopping.wait(0.2):
            pass
    finally:
        if args.stats_file is not None:
            _write_json(args.stats_file, proxy.stats())
        proxy.stop()
    return 0


def _write_json(path: Path, data: Any) -> None:
    # Atomic, so a benchmark polling for the file never reads half of it.
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(partial, path)


if __name__ == "__main__":
    sys.exit(main())
