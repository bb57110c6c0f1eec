"""Validated, typed plugin configuration built from the raw `ExecutorSettings`.

Every malformed value raises `ConfigError` with one line that names the setting,
the offending value and the fix, before any job is submitted.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from snakemake_executor_plugin_awsbatch.errors import ConfigError
from snakemake_executor_plugin_awsbatch.jobside.cache import OFF, parse_bound
from snakemake_executor_plugin_awsbatch.run_report import Prices, parse_prices
from snakemake_executor_plugin_awsbatch.settings import (
    DEFAULT_INPUT_CACHE,
    DEFAULT_NODE_JOIN_TIMEOUT,
    DEFAULT_RUNTIME_ROOT,
    DEFAULT_SCRATCH_ROOT,
    ExecutorSettings,
)

# Batch allows 50 tags per resource; the plugin adds its own (run id, rule).
MAX_USER_TAGS = 47
_TAG_KEY = re.compile(r"^[\w.:/=+\-@ ]{1,128}$")
_TAG_VALUE = re.compile(r"^[\w.:/=+\-@ ]{0,256}$")
_EFS_ID = re.compile(r"^fs-[0-9a-f]{8,40}$")
_ACCESS_POINT_ID = re.compile(r"^fsap-[0-9a-f]{8,40}$")
_S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(?:/(?P<key>.*))?$")


@dataclass(frozen=True)
class EfsMount:
    file_system_id: str
    container_path: str
    access_point_id: str | None = None


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str  # no leading or trailing slash; "" for the bucket root

    def uri(self, *parts: str) -> str:
        key = "/".join(p.strip("/") for p in (self.key, *parts) if p.strip("/"))
        return f"s3://{self.bucket}/{key}"


@dataclass(frozen=True)
class PluginConfig:
    default_queue: str
    priority_queue: str
    region: str | None
    image: str | None
    job_role: str | None
    execution_role: str | None
    tags: dict[str, str]
    spot_retries: int
    priority_rules: frozenset[str]
    log_group: str
    efs: tuple[EfsMount, ...]
    default_mem_mb: int
    unschedulable_timeout: int
    log_tail_lines: int
    s3_prefix: S3Location | None
    scratch_root: str
    runtime_root: str = DEFAULT_RUNTIME_ROOT
    stack: str | None = None
    no_arrays: bool = False
    no_index_files: bool = False
    submit_rate: int = 40
    input_cache: str = DEFAULT_INPUT_CACHE  # canonical: "off", "<bytes>B" or "<p>%"
    multinode_queue: str | None = None
    node_join_timeout: int = DEFAULT_NODE_JOIN_TIMEOUT
    prices: Prices | None = None
    extra: dict[str, str] = field(default_factory=dict)


def _split_items(values: list[str] | None) -> list[str]:
    """List settings may arrive as one whitespace-separated string (from an env var)."""
    return [part for value in values or [] for part in value.split()]


def parse_tags(values: list[str] | None) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in _split_items(values):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(
                f"--awsbatch-tags: {item!r} is not KEY=VALUE; write e.g. --awsbatch-tags "
                "project=genomics owner=alice"
            )
        if not _TAG_KEY.match(key) or key.lower().startswith("aws:"):
            raise ConfigError(
                f"--awsbatch-tags: tag key {key!r} is invalid; use 1-128 letters, digits, "
                "spaces or _.:/=+-@, not starting with 'aws:'"
            )
        if not _TAG_VALUE.match(value):
            raise ConfigError(
                f"--awsbatch-tags: value of tag {key!r} is invalid; use at most 256 letters, "
                "digits, spaces or _.:/=+-@"
            )
        tags[key] = value
    if len(tags) > MAX_USER_TAGS:
        raise ConfigError(
            f"--awsbatch-tags: {len(tags)} tags given, at most {MAX_USER_TAGS} fit "
            "(Batch allows 50 per job and the plugin adds its own)"
        )
    return tags


def parse_efs(values: list[str] | None) -> tuple[EfsMount, ...]:
    mounts = []
    for item in _split_items(values):
        parts = item.split(":")
        if len(parts) not in (2, 3):
            raise ConfigError(
                f"--awsbatch-efs: {item!r} is not FS_ID:/container/path[:ACCESS_POINT_ID]; "
                "write e.g. fs-0123456789abcdef0:/mnt/ref"
            )
        fs_id, path = parts[0], parts[1]
        access_point = parts[2] if len(parts) == 3 else None
        if not _EFS_ID.match(fs_id):
            raise ConfigError(
                f"--awsbatch-efs: {fs_id!r} in {item!r} is not an EFS id like fs-0123456789abcdef0"
            )
        if not path.startswith("/") or path == "/":
            raise ConfigError(
                f"--awsbatch-efs: mount path {path!r} in {item!r} must be an absolute "
                "directory below / (e.g. /mnt/ref)"
            )
        if access_point is not None and not _ACCESS_POINT_ID.match(access_point):
            raise ConfigError(
                f"--awsbatch-efs: {access_point!r} in {item!r} is not an access point id "
                "like fsap-0123456789abcdef0"
            )
        mounts.append(EfsMount(fs_id, path, access_point))
    paths = [m.container_path for m in mounts]
    if len(set(paths)) != len(paths):
        raise ConfigError("--awsbatch-efs: two file systems are mounted at the same path")
    return tuple(mounts)


def parse_s3_prefix(value: str | None, setting: str = "--awsbatch-s3-prefix") -> S3Location | None:
    if not value:
        return None
    match = _S3_URI.match(value.strip())
    if not match:
        raise ConfigError(
            f"{setting}: {value!r} is not an S3 URI; write s3://BUCKET/PREFIX "
            "(bucket names are lowercase letters, digits, dots and hyphens)"
        )
    return S3Location(match["bucket"], (match["key"] or "").strip("/"))


def _bounded(name: str, value: int, low: int, high: int | None = None) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--awsbatch-{name}: {value!r} is not a whole number") from None
    if number < low or (high is not None and number > high):
        upper = f" and {high}" if high is not None else " or more"
        raise ConfigError(f"--awsbatch-{name}: {number} is out of range; use {low}{upper}")
    return number


def _optional(value: str | None) -> str | None:
    # Profiles can hold `""` for "not set" (the official plugin's issue #33).
    return value.strip() if value and value.strip() else None


def load_config(settings: ExecutorSettings | None) -> PluginConfig:
    s = settings or ExecutorSettings()
    if not _optional(s.default_queue):
        raise ConfigError("--awsbatch-default-queue is empty; give a Batch job queue name or ARN")
    if not _optional(s.priority_queue):
        raise ConfigError("--awsbatch-priority-queue is empty; give a Batch job queue name or ARN")
    return PluginConfig(
        default_queue=s.default_queue.strip(),
        priority_queue=s.priority_queue.strip(),
        region=_optional(s.region),
        image=_optional(s.image),
        job_role=_optional(s.job_role),
        execution_role=_optional(s.execution_role),
        tags=parse_tags(s.tags),
        # Batch allows at most 10 attempts in a retry strategy.
        spot_retries=_bounded("spot-retries", s.spot_retries, 0, 9),
        priority_rules=frozenset(_split_items(s.priority_rules)),
        log_group=_optional(s.log_group) or "/aws/batch/job",
        efs=parse_efs(s.efs),
        default_mem_mb=_bounded("default-mem-mb", s.default_mem_mb, 4),
        unschedulable_timeout=_bounded("unschedulable-timeout", s.unschedulable_timeout, 0),
        log_tail_lines=_bounded("log-tail-lines", s.log_tail_lines, 0),
        s3_prefix=parse_s3_prefix(_optional(s.s3_prefix)),
        scratch_root=_host_directory("scratch-root", s.scratch_root, DEFAULT_SCRATCH_ROOT),
        runtime_root=_host_directory("runtime-root", s.runtime_root, DEFAULT_RUNTIME_ROOT),
        stack=_optional(s.stack),
        no_arrays=bool(s.no_arrays),
        no_index_files=bool(s.no_index_files),
        submit_rate=_bounded("submit-rate", s.submit_rate, 1, 50),
        input_cache=parse_input_cache(s.input_cache),
        multinode_queue=_optional(s.multinode_queue),
        node_join_timeout=_bounded("node-join-timeout", s.node_join_timeout, 10, 86400),
        prices=parse_prices(_split_items(s.prices)),
    )


def parse_input_cache(value: str | None) -> str:
    """The cache's bound as the runner reads it from the manifest (jobside/cache.py)."""
    text = _optional(str(value) if value is not None else None) or DEFAULT_INPUT_CACHE
    try:
        bound = parse_bound(text)
    except ValueError as e:
        raise ConfigError(
            f"--awsbatch-input-cache: {value!r} {e}; write a size (200GiB, 500GB), a share "
            "of the scratch file system (25%), or off"
        ) from None
    return OFF if bound is None else str(bound)


def _host_directory(name: str, value: str, default: str) -> str:
    path = (value or "").strip()
    if not path.startswith("/") or path == "/":
        raise ConfigError(
            f"--awsbatch-{name}: {value!r} must be an absolute host directory "
            f"below / (default {default})"
        )
    return path.rstrip("/")


def fill_unset(settings: ExecutorSettings, values: Mapping[str, str]) -> ExecutorSettings:
    """Settings with `values` (e.g. a stack's outputs) wherever the user left the default."""
    defaults = {f.name: f.default for f in dataclasses.fields(ExecutorSettings)}
    unset: dict[str, Any] = {
        name: value
        for name, value in values.items()
        if getattr(settings, name) in (defaults[name], "")
    }
    return dataclasses.replace(settings, **unset)
