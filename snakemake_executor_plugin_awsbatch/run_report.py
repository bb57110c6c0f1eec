"""The run report: where a run's time and money went, from what Batch reported.

Every Batch job the run submits, resubmits or adopts is entered in a `Ledger` with its
rule, queue and requested shape; Snakemake's verdict on it is noted as it comes. When the
run ends (finished, failed or Ctrl-C: executor.shutdown) the ledger asks DescribeJobs
about all of them, 100 a call, and sums per rule what Batch said: attempts, spot reclaims
(attempts whose reason is "Host EC2 ..."), time queued (createdAt to the first start)
and running (each attempt's startedAt to stoppedAt), and the vCPU- and GiB-hours the
jobs requested for that running time. With prices (`--awsbatch-prices`), an estimated
cost: a job is priced as spot or on-demand by the first compute environment of its queue.
Without prices there is no cost column: no invented prices.

The report goes to the log as a table and to `.snakemake/awsbatch/run-<id>.json`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from snakemake_executor_plugin_awsbatch import status
from snakemake_executor_plugin_awsbatch.errors import ConfigError

REPORT_DIR = Path(".snakemake") / "awsbatch"
# Jobs Snakemake has the outcome of may still be stopping in Batch (a runner reports
# before its container exits): wait this long for their stoppedAt.
SETTLE_SECONDS = 30.0
SETTLE_POLL_SECONDS = 0.5
ENDED = {"SUCCEEDED", "FAILED"}
PRICE_KEYS = ("spot-vcpu-hour", "spot-gib-hour", "on-demand-vcpu-hour", "on-demand-gib-hour")
SPOT_KINDS = {"SPOT", "FARGATE_SPOT"}
ON_DEMAND_KINDS = {"EC2", "FARGATE"}
COLUMNS = [
    "rule",
    "jobs",
    "attempts",
    "reclaims",
    "moved",
    "failed",
    "queued",
    "running",
    "vCPU-h",
    "GiB-h",
]


# -- prices --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prices:
    """Prices per vCPU-hour and per GiB-hour, by capacity; None where not given."""

    spot_vcpu_hour: float | None = None
    spot_gib_hour: float | None = None
    on_demand_vcpu_hour: float | None = None
    on_demand_gib_hour: float | None = None

    def per_hour(self, capacity: str) -> tuple[float, float] | None:
        """(per vCPU-hour, per GiB-hour) on this capacity ("spot", "on-demand"), if known."""
        pair = {
            "spot": (self.spot_vcpu_hour, self.spot_gib_hour),
            "on-demand": (self.on_demand_vcpu_hour, self.on_demand_gib_hour),
        }.get(capacity)
        if pair is None or pair[0] is None or pair[1] is None:
            return None
        return pair[0], pair[1]


def parse_prices(items: Iterable[str]) -> Prices | None:
    """`spot-vcpu-hour=0.012 spot-gib-hour=0.0016 ...` -> Prices; no items -> None."""
    given: dict[str, float] = {}
    how = (
        "write KEY=PRICE with KEY one of " + ", ".join(PRICE_KEYS) + ", e.g. --awsbatch-prices "
        "spot-vcpu-hour=0.0125 spot-gib-hour=0.0016"
    )
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in PRICE_KEYS:
            raise ConfigError(f"--awsbatch-prices: {item!r} is not a known price; {how}")
        try:
            price = float(value)
        except ValueError:
            price = -1.0
        if not price >= 0 or price == float("inf"):
            raise ConfigError(
                f"--awsbatch-prices: {key} must be a price of 0 or more, not {value!r}; {how}"
            )
        given[key.replace("-", "_")] = price
    return Prices(**given) if given else None


def capacity_of(kind: str | None) -> str | None:
    """A compute environment's type -> the capacity it is priced as."""
    if kind in SPOT_KINDS:
        return "spot"
    if kind in ON_DEMAND_KINDS:
        return "on-demand"
    return None  # unmanaged: its instances are not Batch's to price


# -- what was submitted ----------------------------------------------------------------------


@dataclass
class Entry:
    """One Batch job of the run, as submitted."""

    job_id: str
    rule: str
    queue: str
    vcpus: float
    memory_mib: int
    nodes: int = 1
    moved: bool = False  # resubmitted to the priority queue after spot reclaims
    adopted: bool = False  # left by a dead run and followed by this one
    # Snakemake's verdict: succeeded, failed, moved (to the priority queue), cancelled
    # (Ctrl-C or the run's end), or none yet: unfinished.
    outcome: str = "unfinished"


class Ledger:
    """The run's Batch jobs; thread-safe (submissions and status rounds run in threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] = {}

    def add(self, entry: Entry) -> None:
        with self._lock:
            self._entries[entry.job_id] = entry

    def outcome(self, job_id: str, outcome: str) -> None:
        with self._lock:
            if job_id in self._entries:
                self._entries[job_id].outcome = outcome

    def entries(self) -> list[Entry]:
        with self._lock:
            return list(self._entries.values())


# -- what Batch reported ---------------------------------------------------------------------


@dataclass
class Usage:
    """One job's figures from its DescribeJobs entry."""

    status: str
    attempts: int
    reclaims: int
    queued_seconds: float
    running_seconds: float


def usage(detail: Mapping[str, Any] | None, now_ms: int) -> Usage:
    """Attempts, reclaims and times of one job; a job still running counts up to now."""
    if detail is None:  # Batch no longer knows it
        return Usage("UNKNOWN", 0, 0, 0.0, 0.0)
    job_status = str(detail.get("status") or "UNKNOWN")
    attempts = [a for a in detail.get("attempts") or [] if a.get("startedAt") is not None]
    spans = [(int(a["startedAt"]), a.get("stoppedAt")) for a in attempts]
    current = detail.get("startedAt")
    if current is not None and not any(start == current for start, _ in spans):
        spans.append((int(current), detail.get("stoppedAt")))  # the attempt under way
    end_of = _or(detail.get("stoppedAt"), now_ms)
    running_ms = sum(max(0, int(_or(stop, end_of)) - start) for start, stop in spans)
    first = min((start for start, _ in spans), default=None)
    created = detail.get("createdAt")
    queued_ms = max(0, int(_or(first, end_of)) - int(created)) if created is not None else 0
    reclaims = sum(
        1
        for a in attempts
        if str(a.get("statusReason") or "").startswith(status.SPOT_RECLAIM_PREFIX)
    )
    if not reclaims and status.was_spot_reclaimed(detail):
        reclaims = 1  # a reclaim that ended the job before its attempt was recorded
    return Usage(job_status, len(spans), reclaims, queued_ms / 1000, running_ms / 1000)


# -- the sums --------------------------------------------------------------------------------


@dataclass
class Totals:
    jobs: int = 0
    attempts: int = 0
    spot_reclaims: int = 0
    moved_to_priority: int = 0
    failed: int = 0
    unfinished: int = 0
    queued_seconds: float = 0.0
    running_seconds: float = 0.0
    vcpu_hours: float = 0.0
    gib_hours: float = 0.0
    cost: float | None = 0.0  # None: some job's capacity has no price

    def add(self, job: dict[str, Any]) -> None:
        self.jobs += 1
        self.attempts += job["attempts"]
        self.spot_reclaims += job["spot_reclaims"]
        self.moved_to_priority += job["moved"]
        self.failed += job["outcome"] == "failed"
        self.unfinished += job["outcome"] in ("unfinished", "cancelled")
        self.queued_seconds += job["queued_seconds"]
        self.running_seconds += job["running_seconds"]
        self.vcpu_hours += job["vcpu_hours"]
        self.gib_hours += job["gib_hours"]
        if self.cost is not None:
            self.cost = None if job["cost"] is None else self.cost + job["cost"]


def job_record(
    entry: Entry,
    detail: Mapping[str, Any] | None,
    capacity: str | None,
    prices: Prices | None,
    now_ms: int,
) -> dict[str, Any]:
    """One job's line of the JSON report."""
    used = usage(detail, now_ms)
    hours = used.running_seconds / 3600 * entry.nodes
    vcpu_hours, gib_hours = entry.vcpus * hours, entry.memory_mib / 1024 * hours
    rates = prices.per_hour(capacity) if prices and capacity else None
    return {
        **asdict(entry),
        "status": used.status,
        "capacity": capacity,
        "attempts": used.attempts,
        "spot_reclaims": used.reclaims,
        "queued_seconds": round(used.queued_seconds, 3),
        "running_seconds": round(used.running_seconds, 3),
        "vcpu_hours": vcpu_hours,
        "gib_hours": gib_hours,
        "cost": vcpu_hours * rates[0] + gib_hours * rates[1] if rates else None,
    }


def summarize(jobs: list[dict[str, Any]]) -> tuple[dict[str, Totals], Totals]:
    rules: dict[str, Totals] = {}
    total = Totals()
    for job in jobs:
        rules.setdefault(job["rule"], Totals()).add(job)
        total.add(job)
    return dict(sorted(rules.items())), total


# -- at the end of the run -------------------------------------------------------------------


@dataclass
class RunReport:
    run_id: str
    jobs: list[dict[str, Any]]
    staging: dict[str, int]
    prices: Prices | None
    rules: dict[str, Totals] = field(init=False)
    total: Totals = field(init=False)

    def __post_init__(self) -> None:
        self.rules, self.total = summarize(self.jobs)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "prices": asdict(self.prices) if self.prices else None,
            "rules": {name: asdict(t) for name, t in self.rules.items()},
            "total": asdict(self.total),
            "staging": self.staging,
            "jobs": self.jobs,
        }

    def write(self, directory: Path = REPORT_DIR) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"run-{self.run_id}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        tmp.replace(path)
        return path

    def table(self) -> str:
        """The per-rule table for the log, with the run's totals and a cost note."""
        columns = list(COLUMNS) + (["est. cost"] if self.prices else [])
        named = [*self.rules.items(), ("total", self.total)]
        rows = [columns] + [self._row(name, totals) for name, totals in named]
        widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
        lines = ["  ".join(_aligned(row, widths)) for row in rows]
        if self.prices:
            lines.append(
                "est. cost: the requested vCPUs and memory for the time they ran, at the "
                "prices given; idle instances, EBS and data transfer are not in it"
            )
        else:
            lines.append("no cost estimate: give prices with --awsbatch-prices")
        return "\n".join(lines)

    def _row(self, name: str, t: Totals) -> list[str]:
        counts = [t.jobs, t.attempts, t.spot_reclaims, t.moved_to_priority, t.failed]
        row = [name, *map(str, counts), _duration(t.queued_seconds)]
        row += [_duration(t.running_seconds), f"{t.vcpu_hours:.3f}", f"{t.gib_hours:.3f}"]
        if self.prices:
            row.append("n/a" if t.cost is None else f"{t.cost:.4f}")
        return row


def _aligned(row: list[str], widths: list[int]) -> list[str]:
    """The rule's name to the left, the figures to the right."""
    first, *figures = zip(row, widths, strict=True)
    return [first[0].ljust(first[1])] + [cell.rjust(width) for cell, width in figures]


def describe_settled(
    entries: list[Entry],
    describe: Callable[[list[str]], dict[str, dict[str, Any]]],
    *,
    settle_seconds: float = SETTLE_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, dict[str, Any]]:
    """DescribeJobs' details of these jobs by id, after waiting up to `settle_seconds`
    for those Snakemake has the outcome of to stop in Batch too (not for cancelled ones:
    Ctrl-C should not wait; their time counts up to now)."""
    details = _describe_all(describe, [e.job_id for e in entries])
    deadline = time.monotonic() + settle_seconds
    while time.monotonic() < deadline:
        settled = [e for e in entries if e.outcome in ("succeeded", "failed", "moved")]
        stopping = [e.job_id for e in settled if _stopping(details, e)]
        if not stopping:
            break
        sleep(SETTLE_POLL_SECONDS)
        details.update(_describe_all(describe, stopping))
    return details


def _stopping(details: Mapping[str, Mapping[str, Any]], entry: Entry) -> bool:
    detail = details.get(entry.job_id)
    return detail is not None and detail.get("status") not in ENDED


def _describe_all(
    describe: Callable[[list[str]], dict[str, dict[str, Any]]], ids: list[str]
) -> dict[str, dict[str, Any]]:
    details: dict[str, dict[str, Any]] = {}
    for chunk in status.chunks(ids):
        details.update(describe(chunk))
    return details


def build(
    run_id: str,
    ledger: Ledger,
    describe: Callable[[list[str]], dict[str, dict[str, Any]]],
    capacity: Callable[[str], str | None],
    prices: Prices | None,
    staging: dict[str, int],
    *,
    settle_seconds: float = SETTLE_SECONDS,
    now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
) -> RunReport:
    entries = ledger.entries()
    details = describe_settled(entries, describe, settle_seconds=settle_seconds)
    now = now_ms()
    jobs = [job_record(e, details.get(e.job_id), capacity(e.queue), prices, now) for e in entries]
    return RunReport(run_id, jobs, staging, prices)


def _or(value: Any, default: Any) -> Any:
    """`value`, unless Batch left it out (0 ms is a time, not a missing one)."""
    return default if value is None else value


def _duration(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
