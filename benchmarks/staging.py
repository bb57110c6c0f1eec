"""Staging throughput: this plugin's transfer layer against `aws s3 cp/sync` (and s3fs).

Same files, same S3 endpoint, one run. Every measurement is a fresh process, so
interpreter start-up and imports count for every tool alike:

    python3 -m venv /tmp/awscli-venv && /tmp/awscli-venv/bin/pip install awscli
    .venv/bin/python benchmarks/staging.py                 # 1 GiB + 1,000 small files
    .venv/bin/python benchmarks/staging.py --large-mib 64  # quick
    .venv/bin/python benchmarks/staging.py --s3fs-python /tmp/s3fs-venv/bin/python

awscli 1.x pins docutils below 0.20, which the project's Snakemake cannot use: like
s3fs, it runs from a venv of its own (--aws, default /tmp/awscli-venv/bin/aws).

Uses AWS_ENDPOINT_URL when set (the sandbox's moto server), else starts a moto server
of its own in a separate process. Prints a table and writes JSON (--json).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import dummy_credentials, s3_endpoint

MiB = 1024 * 1024
# awscli from a venv of its own (see the docstring).
DEFAULT_AWS = "/tmp/awscli-venv/bin/aws"
BUCKET = "staging-benchmark"
ORDER = [
    "large upload",
    "large download",
    "small upload",
    "small download",
    "small re-upload, unchanged",
]
OURS_WORKER = """
import json, sys
from pathlib import Path
from snakemake_executor_plugin_awsbatch.transfer import (
    DownloadItem, HashCache, UploadItem, download_files, upload_files)
spec = json.loads(Path(sys.argv[1]).read_text())
cache = HashCache(spec.get("hash_cache"))
if spec["op"] == "upload":
    stats = upload_files([UploadItem(p, u) for p, u in spec["items"]], hash_cache=cache)
    cache.save()
else:
    stats = download_files([DownloadItem(u, p, h, s) for u, p, h, s in spec["items"]])
print(json.dumps({"files": stats.files, "bytes": stats.bytes, "skipped": stats.skipped}))
"""
S3FS_WORKER = """
import sys, s3fs
op, src, dst = sys.argv[1:4]
fs = s3fs.S3FileSystem()
if op == "upload":
    fs.put(src, dst, recursive=True)
else:
    fs.get(src, dst, recursive=True)
"""


@dataclass
class Row:
    scenario: str
    tool: str
    seconds: float
    bytes: int
    files: int

    @property
    def mib_per_s(self) -> float:
        return self.bytes / MiB / self.seconds

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds


LOAD_AT_START = os.getloadavg()


def main() -> None:
    args = _parse_args()
    dummy_credentials()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="staging-bench-"))
    try:
        with s3_endpoint() as endpoint:
            rows = run(args, work, endpoint)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    _print_table(rows, args)
    print(
        f"load average at start {LOAD_AT_START}, at end {os.getloadavg()} ({os.cpu_count()} CPUs)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(_summary(rows, args), indent=1))
        print(f"\nwritten: {args.json}")


def _parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--large-mib", type=int, default=1024, help="size of the large file (MiB)")
    p.add_argument("--small-count", type=int, default=1000, help="number of small files")
    p.add_argument("--small-kib", type=int, nargs=2, default=[4, 64], metavar=("MIN", "MAX"))
    p.add_argument("--rounds", type=int, default=1, help="repeat each measurement; median kept")
    p.add_argument("--s3fs-python", help="python of a venv with s3fs (it pins another botocore)")
    p.add_argument("--aws", default=DEFAULT_AWS, help=f"awscli's aws (default {DEFAULT_AWS})")
    p.add_argument("--workdir", help="keep the data here instead of a temporary directory")
    p.add_argument("--json", default="benchmarks/staging-results.json", help="'' for none")
    return p.parse_args()


def run(args: argparse.Namespace, work: Path, endpoint: str) -> list[Row]:
    import boto3

    boto3.client("s3").create_bucket(Bucket=BUCKET)
    large, small_dir, small = _make_data(work / "data", args)
    large_bytes = large.stat().st_size
    small_bytes = sum(p.stat().st_size for p in small)
    print(
        f"endpoint {endpoint}; large {large_bytes / MiB:.0f} MiB; "
        f"{len(small)} small files, {small_bytes / MiB:.1f} MiB",
        flush=True,
    )
    if not os.access(args.aws, os.X_OK):
        sys.exit(
            f"no awscli at {args.aws}: python3 -m venv /tmp/awscli-venv && "
            "/tmp/awscli-venv/bin/pip install awscli (or --aws PATH)"
        )
    tools = [("ours", _Ours(work)), ("awscli", _AwsCli(args.aws))]
    if args.s3fs_python:
        tools.append(("s3fs", _S3fs(args.s3fs_python)))
    _warm_up(work)
    times: dict[tuple[str, str], list[float]] = defaultdict(list)
    sizes: dict[str, tuple[int, int]] = {}
    for round_ in range(args.rounds):
        # Alternate the order, so no tool always meets a colder (or fuller) server.
        for name, tool in tools if round_ % 2 == 0 else tools[::-1]:
            for scenario, seconds, nbytes, nfiles in _bench_tool(
                name, tool, large, small_dir, small, work / name
            ):
                times[(scenario, name)].append(seconds)
                sizes[scenario] = (nbytes, nfiles)
                print(f"  round {round_ + 1}: {scenario:28} {name:7} {seconds:7.2f} s", flush=True)
    return [
        Row(scenario, name, statistics.median(ts), *sizes[scenario])
        for (scenario, name), ts in sorted(
            times.items(), key=lambda kv: (ORDER.index(kv[0][0]), kv[0][1])
        )
    ]


def _warm_up(work: Path) -> None:
    """One small and one multipart upload first: moto's first requests are slow."""
    import boto3

    client = boto3.client("s3")
    client.put_object(Bucket=BUCKET, Key="warm-up/small", Body=b"x")
    warm = work / "warm-up.bin"
    warm.write_bytes(os.urandom(20 * MiB))
    client.upload_file(str(warm), BUCKET, "warm-up/large")
    client.download_file(BUCKET, "warm-up/large", str(warm))
    warm.unlink()


def _bench_tool(
    name: str, t: Tool, large: Path, small_dir: Path, small: list[Path], out: Path
) -> list[tuple[str, float, int, int]]:
    """One round of every scenario for one tool: (scenario, seconds, bytes, files)."""
    large_n, small_n = (large.stat().st_size, 1), (sum(p.stat().st_size for p in small), len(small))
    scenarios: list[tuple[str, Callable[[], None], Callable[[], None] | None, tuple]] = [
        ("large upload", lambda: t.put_file(large, f"{name}/large.bin"), None, large_n),
        (
            "large download",
            lambda: t.get_file(f"{name}/large.bin", large, out / "large.bin"),
            lambda: _same_files([large], large.parent, out),
            large_n,
        ),
        ("small upload", lambda: t.put_dir(small_dir, small, f"{name}/small"), None, small_n),
        (
            "small download",
            lambda: t.get_dir(f"{name}/small", small_dir, small, out / "small"),
            lambda: _same_files(small, small_dir, out / "small"),
            small_n,
        ),
    ]
    if name != "s3fs":  # s3fs has no "sync": it would send everything again
        again = (
            "small re-upload, unchanged",
            lambda: t.put_dir(small_dir, small, f"{name}/small", again=True),
            None,
            small_n,
        )
        scenarios.append(again)
    rows = []
    for scenario, transfer, check, (nbytes, nfiles) in scenarios:
        if scenario in ("large upload", "small upload"):
            _delete_prefix(f"{name}/{scenario.split()[0]}")  # a first upload, every round
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        start = time.monotonic()
        transfer()
        rows.append((scenario, time.monotonic() - start, nbytes, nfiles))
        if check:
            check()  # untimed: the download is complete and correct
    return rows


def _delete_prefix(prefix: str) -> None:
    import boto3

    client = boto3.client("s3")
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})


def _make_data(root: Path, args: argparse.Namespace) -> tuple[Path, Path, list[Path]]:
    """One large file of random bytes, and small files of random sizes in 10 directories."""
    root.mkdir(parents=True, exist_ok=True)
    large = root / "large.bin"
    if not large.exists() or large.stat().st_size != args.large_mib * MiB:
        with open(large, "wb") as f:
            for _ in range(args.large_mib):
                f.write(os.urandom(MiB))
    rng = random.Random(42)
    small_dir = root / "small"
    small = []
    for i in range(args.small_count):
        path = small_dir / f"d{i % 10}" / f"file {i}.dat"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(rng.randint(*args.small_kib) * 1024))
        small.append(path)
    # Older than the hash cache's "racy" window, as inputs of a real run usually are.
    old = time.time() - 3600
    for p in [large, *small]:
        os.utime(p, (old, old))
    return large, small_dir, small


class Tool(Protocol):
    def put_file(self, src: Path, key: str) -> None: ...
    def get_file(self, key: str, src: Path, dest: Path) -> None: ...
    def put_dir(self, root: Path, files: list[Path], key: str, again: bool = False) -> None: ...
    def get_dir(self, key: str, root: Path, files: list[Path], dest: Path) -> None: ...


def _same_files(originals: list[Path], root: Path, copy_root: Path) -> None:
    for p in originals:
        copy = copy_root / p.relative_to(root)
        if not copy.is_file() or _sha(copy) != _sha(p):
            raise RuntimeError(f"download check failed: {copy} differs from {p}")


def _sha(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _uri(key: str) -> str:
    return f"s3://{BUCKET}/{key}"


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}... failed: {proc.stderr[-2000:]}")
    return proc.stdout


class _Ours:
    """upload_files / download_files, as staging and the job runner call them."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.hashes: dict[Path, str] = {}
        self.cache = work / "hash-cache.json"  # the submitting side keeps one across runs

    def _worker(self, spec: dict) -> dict:
        spec_file = self.work / "spec.json"
        spec_file.write_text(json.dumps(spec))
        return json.loads(_run([sys.executable, "-c", OURS_WORKER, str(spec_file)]))

    def _sha(self, path: Path) -> str:
        # The submitting side records each input's digest in the manifest; not timed there.
        if path not in self.hashes:
            self.hashes[path] = _sha(path)
        return self.hashes[path]

    def put_file(self, src: Path, key: str) -> None:
        self.cache.unlink(missing_ok=True)  # a first upload hashes everything
        self._worker(
            {
                "op": "upload",
                "items": [[str(src), _uri(key)]],
                "hash_cache": str(self.cache),
            }
        )

    def get_file(self, key: str, src: Path, dest: Path) -> None:
        items = [[_uri(key), str(dest), self._sha(src), src.stat().st_size]]
        self._worker({"op": "download", "items": items})

    def put_dir(self, root: Path, files: list[Path], key: str, again: bool = False) -> None:
        items = [[str(p), _uri(f"{key}/{p.relative_to(root).as_posix()}")] for p in files]
        if not again:
            self.cache.unlink(missing_ok=True)  # a first upload hashes everything
        result = self._worker({"op": "upload", "items": items, "hash_cache": str(self.cache)})
        if again and result["skipped"] != len(files):
            raise RuntimeError(f"re-upload sent {len(files) - result['skipped']} files again")

    def get_dir(self, key: str, root: Path, files: list[Path], dest: Path) -> None:
        items = []
        for p in files:
            rel = p.relative_to(root).as_posix()
            items.append([_uri(f"{key}/{rel}"), str(dest / rel), self._sha(p), p.stat().st_size])
        self._worker({"op": "download", "items": items})


class _AwsCli:
    """`aws s3 cp` for one file, `aws s3 sync` for a tree, with awscli's default settings."""

    def __init__(self, aws: str) -> None:
        self.aws = aws

    def put_file(self, src: Path, key: str) -> None:
        _run([self.aws, "s3", "cp", "--only-show-errors", str(src), _uri(key)])

    def get_file(self, key: str, src: Path, dest: Path) -> None:
        _run([self.aws, "s3", "cp", "--only-show-errors", _uri(key), str(dest)])

    def put_dir(self, root: Path, files: list[Path], key: str, again: bool = False) -> None:
        _run([self.aws, "s3", "sync", "--only-show-errors", str(root), _uri(key)])

    def get_dir(self, key: str, root: Path, files: list[Path], dest: Path) -> None:
        _run([self.aws, "s3", "sync", "--only-show-errors", _uri(key), str(dest)])


class _S3fs:
    """s3fs's put/get, run from a venv of its own (its aiobotocore pins an older botocore)."""

    def __init__(self, python: str) -> None:
        self.python = python

    def put_file(self, src: Path, key: str) -> None:
        _run([self.python, "-c", S3FS_WORKER, "upload", str(src), _uri(key)])

    def get_file(self, key: str, src: Path, dest: Path) -> None:
        _run([self.python, "-c", S3FS_WORKER, "download", _uri(key), str(dest)])

    def put_dir(self, root: Path, files: list[Path], key: str, again: bool = False) -> None:
        _run([self.python, "-c", S3FS_WORKER, "upload", f"{root}/", _uri(key)])

    def get_dir(self, key: str, root: Path, files: list[Path], dest: Path) -> None:
        _run([self.python, "-c", S3FS_WORKER, "download", _uri(key) + "/", str(dest)])


def _print_table(rows: list[Row], args: argparse.Namespace) -> None:
    print(f"\n{'scenario':28} {'tool':7} {'seconds':>8} {'MiB/s':>8} {'files/s':>8}")
    for r in rows:
        print(
            f"{r.scenario:28} {r.tool:7} {r.seconds:8.2f} {r.mib_per_s:8.1f} {r.files_per_s:8.1f}"
        )


def _summary(rows: list[Row], args: argparse.Namespace) -> dict:
    return {
        "command": " ".join(sys.argv),
        "args": vars(args),
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "load_average_at_start": LOAD_AT_START,
            "load_average_at_end": os.getloadavg(),
        },
        "rows": [
            asdict(r) | {"mib_per_s": r.mib_per_s, "files_per_s": r.files_per_s} for r in rows
        ],
    }


if __name__ == "__main__":
    main()
