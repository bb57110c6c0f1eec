"""The job manifest: what the submitting side asks the runner to do, as JSON in S3.

The command travels here and not in the SubmitJob request, so long commands and large
configs never meet Batch's request size limits. Parsing validates everything the runner
relies on, so a bad manifest is one clear error before any work starts.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from ..transfer.paths import checked_relpath
from ..transfer.uri import S3Uri
from . import cache, planned

# 2: the plan (what the submitting side planned for each rule of the job, planned.py) and
# the names of upstream checkpoints' directories.
# Version 1 manifests, of runs before it, are still read (adoption finds them).
MANIFEST_VERSION = 2
READABLE_VERSIONS = (1, 2)
OUTPUT_KINDS = ("output", "log", "benchmark")
_SHA256 = re.compile(r"[0-9a-f]{64}")


# The children of an array job share one command and one object, the pack: every
# child's manifest as one compact JSON line, all padded to the same width, so child i
# reads its own with one ranged GET (bytes i*width .. (i+1)*width-1). The submitting side
# then writes one object per array, not one per child: 1,000 PUTs cost seconds of CPU.
PACK_NAME = "manifests.pack"


class ManifestError(ValueError):
    """The manifest is malformed or of a version this runner does not know."""


def pack(manifests: list[Manifest]) -> tuple[bytes, int]:
    """(the pack of these manifests, in index order; the width of each record)."""
    lines = [m.to_json(compact=True).encode() for m in manifests]
    width = max(len(line) for line in lines) + 1
    return b"".join(line.ljust(width - 1) + b"\n" for line in lines), width


def unpack(body: bytes) -> list[Manifest]:
    """Every manifest of a pack, in index order."""
    return [Manifest.from_json(line) for line in body.splitlines() if line.strip()]


def record_range(width: int, environ: dict[str, str]) -> str:
    """The HTTP Range of this array child's record in its array's pack."""
    index = environ.get("AWS_BATCH_JOB_ARRAY_INDEX", "")
    if not index.isdigit():
        raise ManifestError(
            f"the manifest is an array job's pack, but AWS_BATCH_JOB_ARRAY_INDEX is "
            f"{index or 'not set'}; was the job submitted without arrayProperties?"
        )
    start = int(index) * width
    return f"bytes={start}-{start + width - 1}"


@dataclass(frozen=True)
class InputEntry:
    """A source or input file (or `directory()`): fetched to `path` and verified by sha256.

    For a directory, sha256 is that of its listing object and size the sum of its files.
    An empty sha256 (an index file that lies next to a storage-mode input in S3, which the
    plugin only listed) is checked against the size and the object's own recorded digest.
    """

    path: str
    uri: str
    sha256: str
    size: int
    is_dir: bool = False


@dataclass(frozen=True)
class OutputEntry:
    """A file (or directory) the command writes at `path`, uploaded to `uri`.

    kind "output": uploaded only when the command succeeded and every output exists;
    "log" and "benchmark": uploaded whenever they exist, also after a failure.
    """

    path: str
    uri: str
    is_dir: bool = False
    kind: str = "output"


@dataclass(frozen=True)
class StorageDirectory:
    """A `directory()` output or input of the job in Snakemake's S3 storage.

    `uri` is the directory's own object (jobside/directories.py), `path` the job's
    Snakemake's local copy of it, relative to the working directory ("" when that copy
    is elsewhere: the object is still written, without the empty subdirectories).
    """

    path: str
    uri: str
    output: bool


@dataclass(frozen=True)
class DirectoryNames:
    """A checkpoint's directory() output upstream of the job, as names only.

    The job's Snakemake builds its DAG again and runs its input functions anew, and the
    usual one globs such a directory (`checkpoints.x.get().output[0]`). The runner makes,
    at `path` (the job's copy of the directory: in the working directory, or the storage
    plugin's local copy), the subdirectories `dirs` and an empty file for each of
    `files`, dated 1970, where nothing lies yet; the data stays where it is.
    """

    path: str
    dirs: tuple[str, ...]
    files: tuple[str, ...]


@dataclass(frozen=True)
class NodeGroup:
    """A multi-node parallel job's nodes (jobside/nodes.py).

    `slots`: MPI processes per node (the rule's threads); `secret`: random per job, with
    which the nodes prove they belong to it; `join_seconds`: how long the main node waits
    for the others. The workers fetch the first `sources` inputs (the workflow's sources),
    or every input when `all_inputs`.
    """

    count: int
    slots: int
    secret: str
    join_seconds: int
    sources: int = 0
    all_inputs: bool = False


@dataclass
class Manifest:
    run_id: str
    jobname: str
    command: str  # run as `bash -c command` in the job's working directory
    report_uri: str  # where the runner writes its report (JSON)
    inputs: list[InputEntry] = field(default_factory=list)
    outputs: list[OutputEntry] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # extra, non-secret environment
    directories: list[StorageDirectory] = field(default_factory=list)  # in S3 storage
    # What the submitting side notes for itself (which submission, the job's identity),
    # to find the job again after a crash (adoption.py). The runner does not read it.
    record: dict[str, str] = field(default_factory=dict)
    # The instance's input cache (jobside/cache.py), as --awsbatch-input-cache asks: "off",
    # a size ("<bytes>B") or a share of the scratch file system ("25%").
    input_cache: str = cache.OFF
    nodes: NodeGroup | None = None  # a multi-node parallel job's
    # Per rule the job runs: its inputs, outputs, logs and benchmark as the submitting side
    # planned them (planned.py); the job's Snakemake runs exactly these or nothing.
    plan: list[dict[str, Any]] = field(default_factory=list)
    names: list[DirectoryNames] = field(default_factory=list)  # of upstream checkpoints
    version: int = MANIFEST_VERSION

    def to_json(self, compact: bool = False) -> str:
        """Indented for a reader, or compact: one line (JSON escapes newlines in strings)."""
        if compact:
            return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))
        return json.dumps(asdict(self), indent=1, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ManifestError(f"manifest is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise ManifestError("manifest is not a JSON object")
        if data.get("version") not in READABLE_VERSIONS:
            raise ManifestError(
                f"manifest version {data.get('version')!r} is not supported by this runner "
                f"(it reads versions {', '.join(map(str, READABLE_VERSIONS))}); the job "
                "image's plugin version must match the submitting side's"
            )
        try:
            return _parse(data)
        except (KeyError, TypeError, ValueError) as e:
            raise ManifestError(f"invalid manifest: {e}") from None


def _parse(data: dict[str, Any]) -> Manifest:
    env = _typed(data.get("env", {}), dict, "env")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise ValueError("env must map strings to strings")
    inputs = [_input(e) for e in _typed(data.get("inputs", []), list, "inputs")]
    outputs = [_output(e) for e in _typed(data.get("outputs", []), list, "outputs")]
    directories = [_directory(e) for e in _typed(data.get("directories", []), list, "directories")]
    counts = Counter([e.path for e in inputs] + [e.path for e in outputs])
    duplicates = sorted(p for p, n in counts.items() if n > 1)
    if duplicates:
        raise ValueError(f"paths listed more than once: {duplicates}")
    S3Uri.parse(_typed(data["report_uri"], str, "report_uri"))
    record = _typed(data.get("record", {}), dict, "record")
    return Manifest(
        run_id=_typed(data["run_id"], str, "run_id"),
        jobname=_typed(data["jobname"], str, "jobname"),
        command=_typed(data["command"], str, "command"),
        report_uri=data["report_uri"],
        inputs=inputs,
        outputs=outputs,
        env=env,
        directories=directories,
        record={str(k): str(v) for k, v in record.items()},
        input_cache=_cache_setting(data.get("input_cache", cache.OFF)),
        nodes=_nodes(data["nodes"]) if data.get("nodes") is not None else None,
        plan=[_planned(e) for e in _typed(data.get("plan", []), list, "plan")],
        names=[_names(e) for e in _typed(data.get("names", []), list, "names")],
        version=data["version"],
    )


def _input(e: dict[str, Any]) -> InputEntry:
    entry = InputEntry(
        path=checked_relpath(_typed(e["path"], str, "inputs.path")),
        uri=_typed(e["uri"], str, "inputs.uri"),
        sha256=_typed(e["sha256"], str, "inputs.sha256"),
        size=_typed(e["size"], int, "inputs.size"),
        is_dir=_typed(e.get("is_dir", False), bool, "inputs.is_dir"),
    )
    S3Uri.parse(entry.uri)
    if entry.sha256 and not _SHA256.fullmatch(entry.sha256):
        raise ValueError(f"{entry.path}: sha256 is not 64 lowercase hex digits")
    if entry.size < 0:
        raise ValueError(f"{entry.path}: negative size")
    return entry


def _output(e: dict[str, Any]) -> OutputEntry:
    entry = OutputEntry(
        path=checked_relpath(_typed(e["path"], str, "outputs.path")),
        uri=_typed(e["uri"], str, "outputs.uri"),
        is_dir=_typed(e.get("is_dir", False), bool, "outputs.is_dir"),
        kind=_typed(e.get("kind", "output"), str, "outputs.kind"),
    )
    S3Uri.parse(entry.uri)
    if entry.kind not in OUTPUT_KINDS:
        raise ValueError(f"{entry.path}: kind {entry.kind!r} is not one of {OUTPUT_KINDS}")
    return entry


def _directory(e: dict[str, Any]) -> StorageDirectory:
    entry = StorageDirectory(
        path=_typed(e["path"], str, "directories.path"),
        uri=_typed(e["uri"], str, "directories.uri"),
        output=_typed(e["output"], bool, "directories.output"),
    )
    S3Uri.parse(entry.uri)
    if entry.path:
        checked_relpath(entry.path)
    return entry


def _planned(e: Any) -> dict[str, Any]:
    entry = _typed(e, dict, "plan entry")
    _typed(entry["rule"], str, "plan.rule")
    for kind in planned.KINDS:
        files = _typed(entry[kind], list, f"plan.{kind}")
        if not all(isinstance(name, str) for name in files):
            raise TypeError(f"plan.{kind} must list strings")
    return {"rule": entry["rule"], **{kind: entry[kind] for kind in planned.KINDS}}


def _names(e: dict[str, Any]) -> DirectoryNames:
    entry = DirectoryNames(
        path=checked_relpath(_typed(e["path"], str, "names.path")),
        dirs=tuple(_typed(e["dirs"], list, "names.dirs")),
        files=tuple(_typed(e["files"], list, "names.files")),
    )
    for name in (*entry.dirs, *entry.files):
        checked_relpath(_typed(name, str, "names entry"))
    return entry


def _nodes(e: dict[str, Any]) -> NodeGroup:
    group = NodeGroup(
        count=_typed(e["count"], int, "nodes.count"),
        slots=_typed(e["slots"], int, "nodes.slots"),
        secret=_typed(e["secret"], str, "nodes.secret"),
        join_seconds=_typed(e["join_seconds"], int, "nodes.join_seconds"),
        sources=_typed(e.get("sources", 0), int, "nodes.sources"),
        all_inputs=_typed(e.get("all_inputs", False), bool, "nodes.all_inputs"),
    )
    if group.count < 2 or group.slots < 1 or group.join_seconds < 1 or len(group.secret) < 32:
        raise ValueError(f"nodes {group.count}/{group.slots}/{group.join_seconds}: out of range")
    return group


def _cache_setting(value: Any) -> str:
    try:
        cache.parse_bound(_typed(value, str, "input_cache"))
    except ValueError as e:
        raise ValueError(f"input_cache {value!r} {e}") from None
    return str(value)


def _typed(value: Any, kind: type, name: str) -> Any:
    # bool is a subclass of int: a size of `true` is as wrong as a size of "3".
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"{name} must be {kind.__name__}, got {type(value).__name__}")
    return value
