"""The instance's input cache: one download per instance, bounded, checked, never in the way.

Real runner subprocesses share one scratch root, as the containers of one instance share
the host's scratch volume; GETs are counted inside the in-process moto server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.s3.responses import S3Response

from snakemake_executor_plugin_awsbatch.config import load_config
from snakemake_executor_plugin_awsbatch.errors import ConfigError
from snakemake_executor_plugin_awsbatch.jobside.cache import (
    CACHE_DIR,
    MIN_SIZE,
    Bound,
    InputCache,
    Key,
    open_cache,
    parse_bound,
)
from snakemake_executor_plugin_awsbatch.jobside.fetch import Fetched, fetch_inputs
from snakemake_executor_plugin_awsbatch.jobside.manifest import InputEntry, Manifest, ManifestError
from snakemake_executor_plugin_awsbatch.jobside.scratch import (
    ORPHAN_MIN_AGE_SECONDS,
    Scratch,
    sweep_orphans,
)
from snakemake_executor_plugin_awsbatch.settings import ExecutorSettings
from snakemake_executor_plugin_awsbatch.transfer import (
    TransferFailedError,
    make_s3_client,
    sha256_bytes,
)
from tests.jobside.harness import RUNNER, Job

MiB = 1024 * 1024
ON = "1GiB"


@pytest.fixture
def gets(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """GetObject requests per `bucket/key`, counted inside the moto server."""
    counted: Counter[str] = Counter()
    lock = threading.Lock()
    original = S3Response.get_object

    def counting(self: Any) -> Any:
        with lock:
            counted[f"{self.bucket_name}/{self.parse_key_name()}"] += 1
        return original(self)

    monkeypatch.setattr(S3Response, "get_object", counting)
    return counted


def data(tmp_path: Path, name: str, size: int, seed: int = 0) -> tuple[Path, bytes]:
    body = (name.encode() + bytes([seed % 256])) * (size // (len(name) + 1) + 1)
    path = tmp_path / "src" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body[:size])
    return path, body[:size]


def cached_manifest(job: Job, setting: str = ON) -> Manifest:
    manifest = job.manifest()
    manifest.input_cache = setting
    return manifest


def cache_files(root: Path) -> dict[str, list[str]]:
    """The names in each namespace directory of the cache below `root`."""
    top = root / CACHE_DIR
    return {ns.name: sorted(p.name for p in ns.iterdir()) for ns in sorted(top.iterdir())}


def entries(root: Path) -> list[Path]:
    top = root / CACHE_DIR
    return sorted(p for ns in top.iterdir() for p in ns.iterdir() if len(p.name) == 64)


def assert_only_cache_left(root: Path) -> None:
    """Nothing of any job: only the cache, holding entries and their stamps and locks."""
    assert [p.name for p in root.iterdir()] == [CACHE_DIR]
    for names in cache_files(root).values():
        assert all(n.endswith((".stamp", ".lock")) or len(n) == 64 for n in names), names
    for entry in entries(root):
        assert entry.stat().st_nlink == 1, f"{entry} is still linked from a job's scratch"


def start_runner(uri: str, root: Path, stderr: Path) -> subprocess.Popen[bytes]:
    root.mkdir(exist_ok=True)
    with stderr.open("wb") as sink:
        return subprocess.Popen([*RUNNER, uri, "--scratch-root", str(root)], stderr=sink)


def wait_for_text(path: Path, text: str, proc: subprocess.Popen[bytes]) -> None:
    """Until `text` is in `path` (a deadlock guard, not a timing assertion)."""
    deadline = time.monotonic() + 60
    while text not in path.read_text(errors="replace"):
        assert proc.poll() is None, path.read_text()
        assert time.monotonic() < deadline, f"{text!r} never appeared in {path}"
        time.sleep(0.05)


def fetch(manifest: Manifest, workdir: Path, cache: InputCache | None) -> Fetched:
    workdir.mkdir(parents=True, exist_ok=True)
    return fetch_inputs(make_s3_client(), manifest, workdir, cache)


# -- the setting ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "bound"),
    [
        ("200GiB", Bound(size=200 * 1024**3)),
        ("500GB", Bound(size=500 * 1000**3)),
        ("1.5 tb", Bound(size=1_500_000_000_000)),
        ("25%", Bound(percent=25)),
        ("12.5%", Bound(percent=12.5)),
        ("0", None),
        ("off", None),
        ("OFF", None),
        ("0%", None),
    ],
)
def test_bound_settings_parse_and_travel_in_canonical_form(text: str, bound: Bound | None) -> None:
    assert parse_bound(text) == bound
    if bound is not None:
        assert parse_bound(str(bound)) == bound  # what the manifest carries reads back


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("200", "has no unit"),
        ("5 parsecs", "unknown unit 'parsecs'"),
        ("150%", "more than the whole scratch file system"),
        ("-1GB", "neither a size, a percentage nor off"),
        ("lots", "neither a size, a percentage nor off"),
    ],
)
def test_a_bad_setting_is_one_config_error(value: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=r"^--awsbatch-input-cache: ") as error:
        load_config(ExecutorSettings(input_cache=value))
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_the_default_is_a_quarter_of_the_scratch_file_system(tmp_path: Path) -> None:
    assert load_config(ExecutorSettings()).input_cache == "25%"
    assert load_config(ExecutorSettings(input_cache="")).input_cache == "25%"  # profile's ""
    assert load_config(ExecutorSettings(input_cache="0")).input_cache == "off"
    fs = os.statvfs(tmp_path)
    assert Bound(percent=25).resolve(tmp_path) == fs.f_blocks * fs.f_frsize // 4


def test_the_manifest_carries_the_setting_and_refuses_a_bad_one() -> None:
    manifest = Manifest("r", "j", "true", "s3://b/report.json", input_cache="25%")
    assert Manifest.from_json(manifest.to_json()).input_cache == "25%"
    old = manifest.to_json().replace('"input_cache": "25%",', "")
    assert Manifest.from_json(old).input_cache == "off"  # a manifest without it: no cache
    with pytest.raises(ManifestError, match="input_cache 'plenty'"):
        Manifest.from_json(manifest.to_json().replace('"25%"', '"plenty"'))


# -- one download per instance ----------------------------------------------------------


def test_jobs_starting_together_download_a_shared_input_once(
    tmp_path: Path, bucket: str, gets: Counter[str]
) -> None:
    """Four runners want the same input while its entry is busy: all wait, one downloads
    it into the cache, the others link it. The test holds the entry's lock until every
    runner waits, so they truly overlap whatever the machine's speed."""
    ref, body = data(tmp_path, "ref.bin", 3 * MiB)
    root = tmp_path / "scratch"
    marks = tmp_path / "marks"
    marks.mkdir()
    jobs = [
        Job(
            bucket,
            tmp_path,
            f"sha256sum data/ref.bin > {marks}/{n}",
            {"data/ref.bin": ref},
            name=f"j{n}",
        )
        for n in range(4)
    ]
    uris = [j.put_manifest(cached_manifest(j)) for j in jobs]
    cache = open_cache(root, ON)
    assert cache is not None
    busy = cache.lock(Key.content(sha256_bytes(body)), wait=True)
    assert busy is not None
    logs = [tmp_path / f"runner{n}.log" for n in range(4)]
    procs = [start_runner(uri, root, log) for uri, log in zip(uris, logs, strict=True)]
    try:
        for proc, log in zip(procs, logs, strict=True):
            wait_for_text(log, "waiting for it", proc)
    finally:
        busy.release()
    assert [p.wait(timeout=120) for p in procs] == [0] * 4, [p.read_text() for p in logs]

    assert gets[f"{bucket}/files/data/ref.bin"] == 1
    reports = [j.report().input_cache for j in jobs]
    assert sorted(r["misses"] for r in reports) == [0, 0, 0, 1]
    assert sum(r["hits"] for r in reports) == 3 and all(r["waited"] == 1 for r in reports)
    assert sum(r["hit_bytes"] for r in reports) == 3 * len(body)
    digests = {(marks / str(n)).read_text().split()[0] for n in range(4)}
    assert digests == {sha256_bytes(body)}
    assert_only_cache_left(root)
    lines = "".join(log.read_text() for log in logs)
    assert lines.count("input cache: 1 hit (3.1 MB linked)") == 3
    assert lines.count("input cache: 0 hits (0.0 MB linked), 1 file (3.1 MB) downloaded") == 1


def test_a_later_job_links_the_entry_instead_of_downloading(
    tmp_path: Path, bucket: str, gets: Counter[str]
) -> None:
    ref, body = data(tmp_path, "ref.bin", 2 * MiB)
    small, _ = data(tmp_path, "small.txt", 100)
    first = Job(bucket, tmp_path, "true", {"ref.bin": ref, "small.txt": small}, name="a")
    # The job's input is a hard link to the cache's entry: 2 links.
    second = Job(bucket, tmp_path, "test $(stat -c %h ref.bin) = 2", first.inputs, name="b")

    assert first.run(cached_manifest(first)).returncode == 0
    result = second.run(cached_manifest(second))

    assert result.returncode == 0, result.stderr
    assert gets[f"{bucket}/files/ref.bin"] == 1 and gets[f"{bucket}/files/small.txt"] == 2
    report = second.report()
    assert report.input_cache["hits"] == 1 and report.input_cache["misses"] == 0
    assert report.input_cache["uncached"] == 1  # the small file: straight into scratch
    assert report.inputs == {"files": 2, "bytes": len(body) + 100}
    assert "input cache: 1 hit (2.1 MB linked), 0 files (0.0 MB) downloaded" in result.stderr
    (entry,) = entries(first.scratch_root)
    assert entry.name == sha256_bytes(body) and entry.stat().st_mode & 0o777 == 0o444


def test_off_downloads_straight_into_scratch(
    tmp_path: Path, bucket: str, gets: Counter[str]
) -> None:
    ref, _ = data(tmp_path, "ref.bin", 2 * MiB)
    for n, setting in enumerate(["off", "0"]):
        job = Job(bucket, tmp_path, "true", {"ref.bin": ref}, name=f"off{n}")
        result = job.run(cached_manifest(job, setting))
        assert result.returncode == 0, result.stderr
        assert job.report().input_cache["enabled"] == 0
        assert "input cache: off; 1 file (2.1 MB) downloaded" in result.stderr
    assert gets[f"{bucket}/files/ref.bin"] == 2
    assert list((tmp_path / "scratch").iterdir()) == []  # no cache directory either


# -- cleanup stays strict -----------------------------------------------------------------


def test_a_failed_command_leaves_only_the_cache_entry(tmp_path: Path, bucket: str) -> None:
    ref, _ = data(tmp_path, "ref.bin", 2 * MiB)
    job = Job(bucket, tmp_path, "mkdir -p out; cat ref.bin > out/x; exit 3", {"ref.bin": ref})
    result = job.run(cached_manifest(job))
    assert result.returncode == 3
    assert job.report().input_cache["misses"] == 1
    assert_only_cache_left(job.scratch_root)
    assert len(entries(job.scratch_root)) == 1


def test_sigterm_during_the_command_leaves_only_the_cache_entry(
    tmp_path: Path, bucket: str
) -> None:
    ref, _ = data(tmp_path, "ref.bin", 2 * MiB)
    marks = tmp_path / "marks"
    marks.mkdir()
    job = Job(bucket, tmp_path, f"echo started > {marks}/started; sleep 600", {"ref.bin": ref})
    log = tmp_path / "runner.log"
    proc = start_runner(job.put_manifest(cached_manifest(job)), job.scratch_root, log)
    wait_for_text(log, "command: starting", proc)
    while not (marks / "started").exists():
        assert proc.poll() is None, log.read_text()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143, log.read_text()
    assert job.report().status == "terminated"
    assert_only_cache_left(job.scratch_root)
    assert len(entries(job.scratch_root)) == 1


def test_sigterm_while_waiting_for_another_job_cleans_up(tmp_path: Path, bucket: str) -> None:
    ref, body = data(tmp_path, "ref.bin", 2 * MiB)
    job = Job(bucket, tmp_path, "true", {"ref.bin": ref})
    cache = open_cache(job.scratch_root, ON)
    assert cache is not None
    busy = cache.lock(Key.content(sha256_bytes(body)), wait=True)
    assert busy is not None
    log = tmp_path / "runner.log"
    proc = start_runner(job.put_manifest(cached_manifest(job)), job.scratch_root, log)
    try:
        wait_for_text(log, "waiting for it", proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 143, log.read_text()
    finally:
        busy.release()
    assert job.report().status == "terminated"
    assert [p.name for p in job.scratch_root.iterdir()] == [CACHE_DIR]
    assert entries(job.scratch_root) == []


def test_outputs_never_enter_the_cache(tmp_path: Path, bucket: str) -> None:
    ref, body = data(tmp_path, "ref.bin", 2 * MiB)
    command = "mkdir -p out; head -c 3000000 /dev/urandom > out/big.bin; cp ref.bin out/copy.bin"
    job = Job(
        bucket,
        tmp_path,
        command,
        {"ref.bin": ref},
        outputs=[("out/big.bin", "output", False), ("out/copy.bin", "output", False)],
    )
    result = job.run(cached_manifest(job))
    assert result.returncode == 0, result.stderr
    assert [e.name for e in entries(job.scratch_root)] == [sha256_bytes(body)]
    assert sha256_bytes(job.object("out/big.bin")) not in cache_files(job.scratch_root)["sha256"]
    assert_only_cache_left(job.scratch_root)


def test_the_orphan_sweep_leaves_the_cache_alone(tmp_path: Path) -> None:
    cache = open_cache(tmp_path, ON)
    assert cache is not None
    lock = tmp_path / f"{CACHE_DIR}.lock"  # were there a lock file by its name, unheld and old
    lock.touch()
    old = time.time() - ORPHAN_MIN_AGE_SECONDS - 10
    os.utime(lock, (old, old))
    dead = Scratch.create(tmp_path, "dead", "1")
    os.close(dead.lock_fd)
    os.utime(dead.lock_path, (old, old))

    assert sweep_orphans(tmp_path) == [dead.path]
    assert (tmp_path / CACHE_DIR / "sha256").is_dir()


# -- bounded, checked, robust (the fetch step in-process) --------------------------------


def staged(bucket: str, tmp_path: Path, files: dict[str, int], name: str) -> Manifest:
    inputs = {rel: data(tmp_path, rel, size, seed=len(rel))[0] for rel, size in files.items()}
    return Job(bucket, tmp_path, "true", inputs, name=name).manifest()


def backdate(cache: InputCache, path: Path, seconds: float) -> None:
    stamp = cache.entry(Key.content(sha256_bytes(path.read_bytes())))
    used = time.time() - seconds
    os.utime(stamp.with_name(stamp.name + ".stamp"), (used, used))


def test_eviction_spares_an_entry_a_running_job_links(tmp_path: Path, bucket: str) -> None:
    cache = InputCache(open_cache(tmp_path / "scratch", ON).path, bound=5 * MiB)  # type: ignore[union-attr]
    held = fetch(staged(bucket, tmp_path, {"held.bin": 2 * MiB}, "a"), tmp_path / "a", cache)
    fetch(staged(bucket, tmp_path, {"idle.bin": 2 * MiB}, "b"), tmp_path / "b", cache)
    os.unlink(tmp_path / "b" / "idle.bin")  # job b has ended: its link is gone
    # The held entry is the least recently used; the idle one comes next.
    backdate(cache, tmp_path / "a" / "held.bin", 300)
    backdate(cache, tmp_path / "src" / "idle.bin", 200)
    assert held.cache.misses == 1

    new = fetch(staged(bucket, tmp_path, {"new.bin": 2 * MiB}, "c"), tmp_path / "c", cache)

    assert (new.cache.evicted, new.cache.evicted_bytes) == (1, 2 * MiB)
    names = {e.name for e in entries(tmp_path / "scratch")}
    digest = {
        n: sha256_bytes((tmp_path / "src" / n).read_bytes())
        for n in ("held.bin", "idle.bin", "new.bin")
    }
    assert names == {digest["held.bin"], digest["new.bin"]}
    assert (tmp_path / "a" / "held.bin").read_bytes() == (
        tmp_path / "src" / "held.bin"
    ).read_bytes()


def test_when_every_entry_is_held_the_cache_stays_over_its_bound(
    tmp_path: Path, bucket: str
) -> None:
    cache = InputCache(open_cache(tmp_path / "scratch", ON).path, bound=3 * MiB)  # type: ignore[union-attr]
    fetch(staged(bucket, tmp_path, {"one.bin": 2 * MiB}, "a"), tmp_path / "a", cache)
    second = fetch(staged(bucket, tmp_path, {"two.bin": 2 * MiB}, "b"), tmp_path / "b", cache)
    assert second.cache.evicted == 0 and len(entries(tmp_path / "scratch")) == 2


def test_files_too_small_or_larger_than_the_bound_go_straight(tmp_path: Path, bucket: str) -> None:
    cache = InputCache(open_cache(tmp_path / "scratch", ON).path, bound=3 * MiB)  # type: ignore[union-attr]
    manifest = staged(bucket, tmp_path, {"small.bin": MIN_SIZE - 1, "huge.bin": 4 * MiB}, "a")
    done = fetch(manifest, tmp_path / "a", cache)
    assert (done.cache.uncached, done.cache.hits, done.cache.misses) == (2, 0, 0)
    assert entries(tmp_path / "scratch") == []
    assert (tmp_path / "a" / "huge.bin").stat().st_size == 4 * MiB


def test_a_changed_entry_is_found_and_downloaded_again(
    tmp_path: Path, bucket: str, gets: Counter[str]
) -> None:
    cache = open_cache(tmp_path / "scratch", ON)
    manifest = staged(bucket, tmp_path, {"ref.bin": 2 * MiB}, "a")
    fetch(manifest, tmp_path / "a", cache)
    linked = tmp_path / "a" / "ref.bin"
    os.chmod(linked, 0o644)  # what root (most containers) may do anyway
    with linked.open("r+b") as f:  # a tool writing into its input: into the cached inode
        f.write(b"oops")

    again = fetch(manifest, tmp_path / "b", cache)

    assert (again.cache.changed, again.cache.misses, again.cache.hits) == (1, 1, 0)
    assert gets[f"{bucket}/files/ref.bin"] == 2
    good = (tmp_path / "src" / "ref.bin").read_bytes()
    assert (tmp_path / "b" / "ref.bin").read_bytes() == good
    (entry,) = entries(tmp_path / "scratch")
    assert entry.read_bytes() == good and entry.name == sha256_bytes(good)
    third = fetch(manifest, tmp_path / "c", cache)
    assert (third.cache.hits, third.cache.changed) == (1, 0)


def test_a_directory_caches_its_large_files(
    tmp_path: Path, bucket: str, gets: Counter[str]
) -> None:
    src = tmp_path / "index"
    (src / "empty").mkdir(parents=True)
    (src / "sub").mkdir()
    big = os.urandom(2 * MiB)
    (src / "sub" / "genome.bwt").write_bytes(big)
    (src / "genome.ann").write_text("small")
    job = Job(bucket, tmp_path, "true", input_dirs={"ref/index": src})
    manifest = job.manifest()
    cache = open_cache(tmp_path / "scratch", ON)

    first = fetch(manifest, tmp_path / "a", cache)
    second = fetch(manifest, tmp_path / "b", cache)

    assert (first.cache.misses, first.cache.uncached) == (1, 1)
    assert (second.cache.hits, second.cache.uncached) == (1, 1)
    assert second.files == 2 and second.bytes == len(big) + 5
    assert gets[f"{bucket}/files/ref/index/sub/genome.bwt"] == 1
    for workdir in ("a", "b"):
        top = tmp_path / workdir / "ref" / "index"
        assert (top / "empty").is_dir() and (top / "genome.ann").read_text() == "small"
        assert (top / "sub" / "genome.bwt").read_bytes() == big


def test_a_directory_whose_listing_was_changed_fails(tmp_path: Path, bucket: str) -> None:
    src = tmp_path / "index"
    src.mkdir()
    (src / "genome.bwt").write_bytes(os.urandom(2 * MiB))
    manifest = Job(bucket, tmp_path, "true", input_dirs={"idx": src}).manifest()
    manifest.inputs[0] = InputEntry("idx", manifest.inputs[0].uri, "f" * 64, 2 * MiB, True)
    with pytest.raises(TransferFailedError, match="checksum mismatch"):
        fetch(manifest, tmp_path / "a", open_cache(tmp_path / "scratch", ON))


def test_objects_without_a_known_digest_are_cached_by_identity(
    tmp_path: Path, bucket: str, gets: Counter[str]
) -> None:
    """Index files next to a storage-mode input come with an empty sha256: cached under
    the object's recorded digest if it has one, else under its (URI, ETag, size)."""
    s3 = boto3.client("s3")
    ours = staged(bucket, tmp_path, {"genome.fa.bwt": 2 * MiB}, "a").inputs[0]
    foreign = os.urandom(2 * MiB)
    s3.put_object(Bucket=bucket, Key="other/genome.fa.sa", Body=foreign)  # no digest
    manifest = Manifest(
        "r",
        "j",
        "true",
        f"s3://{bucket}/report.json",
        inputs=[
            InputEntry("a/genome.fa.bwt", ours.uri, "", ours.size),
            InputEntry("a/genome.fa.sa", f"s3://{bucket}/other/genome.fa.sa", "", len(foreign)),
        ],
    )
    cache = open_cache(tmp_path / "scratch", ON)

    first = fetch(manifest, tmp_path / "a", cache)
    second = fetch(manifest, tmp_path / "b", cache)

    assert (first.cache.misses, second.cache.hits) == (2, 2)
    assert gets[f"{bucket}/other/genome.fa.sa"] == 1
    files = cache_files(tmp_path / "scratch")
    assert ours.sha256 in files["sha256"]  # shared with staged inputs of that content
    assert len([n for n in files["object"] if len(n) == 64]) == 1
    assert (tmp_path / "b" / "a" / "genome.fa.sa").read_bytes() == foreign
    # A new version of the object is a new key: downloaded, never the old bytes.
    newer = os.urandom(2 * MiB)
    s3.put_object(Bucket=bucket, Key="other/genome.fa.sa", Body=newer)
    third = fetch(manifest, tmp_path / "c", cache)
    assert (third.cache.misses, third.cache.hits) == (1, 1)
    assert (tmp_path / "c" / "a" / "genome.fa.sa").read_bytes() == newer


def test_an_entry_is_copied_where_it_cannot_be_linked(
    tmp_path: Path, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cross_device(src: Any, dst: Any) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    cache = open_cache(tmp_path / "scratch", ON)
    manifest = staged(bucket, tmp_path, {"ref.bin": 2 * MiB}, "a")
    first = fetch(manifest, tmp_path / "a", cache)
    second = fetch(manifest, tmp_path / "b", cache)
    assert (first.cache.copied, second.cache.copied, second.cache.hits) == (1, 1, 1)
    good = (tmp_path / "src" / "ref.bin").read_bytes()
    assert (tmp_path / "b" / "ref.bin").read_bytes() == good
    (entry,) = entries(tmp_path / "scratch")
    assert entry.stat().st_nlink == 1


def test_what_a_killed_download_left_is_removed_unless_someone_works_on_it(
    tmp_path: Path,
) -> None:
    cache = open_cache(tmp_path, ON)
    assert cache is not None
    dead, live = Key.content("d" * 64), Key.content("e" * 64)
    for key in (dead, live):
        part = cache.entry(key).with_name(f".{key.name}.awsbatch-part-1234abcd")
        part.write_bytes(b"half a download")
    working = cache.lock(live, wait=True)  # a live download holds its entry's lock
    assert working is not None
    try:
        assert open_cache(tmp_path, ON) is not None  # opening the cache tidies it
        assert cache_files(tmp_path)["sha256"] == [
            f".{live.name}.awsbatch-part-1234abcd",
            f"{live.name}.lock",
        ]
    finally:
        working.release()
