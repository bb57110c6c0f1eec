"""Index files that lie next to a declared input travel with it.

Genomics tools read index files that rules seldom declare: `bwa mem genome.fa` reads
genome.fa.amb, .ann, .bwt, .pac and .sa; `bcftools mpileup -f genome.fa` reads
genome.fa.fai; `samtools view sample.bam chr1` reads sample.bam.bai; GATK reads
genome.dict. On the user's machine they are simply there, but a job's scratch holds only
what is staged, so the job fails where the same workflow works locally. The plugin
therefore stages, with each declared input, the files next to it whose names are

- the input's name plus a known index suffix (APPENDED: genome.fa.fai, sample.bam.bai), or
- the input's name with its extension replaced by one (REPLACING: genome.dict, sample.bai;
  a compression suffix goes with the extension: genome.fa.gz -> genome.dict).

A rule that declares any index file of an input is taken at its word: nothing else travels
with that input. A careful pipeline's calling rule that declares genome.fa and its .fai
must not get bwa's index (gigabytes for a human genome) staged into every job.

Each input directory costs one listing (kept while the directory's mtime is unchanged),
not a stat per suffix: a directory of 10,000 BAMs is read once, not 40 times per job.
Companions are inputs only: what a job brings back is what its rule declares.

In storage mode the inputs are in S3 and Snakemake's storage plugin fetches into the job
only what the rule declares; StorageCompanions lists the input's S3 "directory" (once per
scheduling round) and has the runner put the companions beside the storage plugin's copy.
"""

from __future__ import annotations

import os
import posixpath
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from snakemake_executor_plugin_awsbatch.jobside.manifest import InputEntry
from snakemake_executor_plugin_awsbatch.staging_files import job_copy
from snakemake_executor_plugin_awsbatch.transfer.uri import S3Uri

# Documented in docs/staging.md ("Index files next to an input"); keep the two in step.
FASTA = (".fai", ".gzi")  # samtools faidx (.gzi: bgzip-compressed FASTA)
BWA = (".amb", ".ann", ".bwt", ".pac", ".sa")
BWA_MEM2 = (".0123", ".bwt.2bit.64")  # with .amb, .ann, .pac above
BOWTIE2 = tuple(
    f"{part}.{ext}"
    for ext in ("bt2", "bt2l")
    for part in (".1", ".2", ".3", ".4", ".rev.1", ".rev.2")
)
HISAT2 = tuple(f".{n}.ht2" for n in range(1, 9))
ALIGNMENTS_AND_VARIANTS = (".bai", ".crai", ".csi", ".tbi", ".idx")  # BAM, CRAM, VCF, BED
APPENDED = (*FASTA, *BWA, *BWA_MEM2, *BOWTIE2, *HISAT2, *ALIGNMENTS_AND_VARIANTS)
REPLACING = (".dict", ".bai", ".crai", ".mmi", *BOWTIE2, *HISAT2)
COMPRESSION = (".gz", ".bgz", ".bz2", ".xz", ".zst")
# Said in a failure's log when a tool did not find a file it reads beside its input.
_MISSING = re.compile(
    r"index|no such file|not found|cannot open|could not open|fail(ed)? to (open|locate)",
    re.IGNORECASE,
)
HINT_SHOWN = 8  # files named in a failure hint
RACY_NS = 2 * 10**9  # a directory changed this recently is listed again next time


def stems(name: str) -> list[str]:
    """What an index file may be named after: the name without its extension (and without
    a compression suffix before it)."""
    found = []
    root, ext = os.path.splitext(name)
    if ext.lower() in COMPRESSION:
        found.append(root)
        root = os.path.splitext(root)[0]
    if ext:
        found.append(root)
    return [s for s in dict.fromkeys(found) if s]


def candidates(name: str) -> list[str]:
    """File names that would be an index file of the file `name` (same directory)."""
    names = [name + suffix for suffix in APPENDED]
    names += [stem + suffix for stem in stems(name) for suffix in REPLACING]
    return [n for n in dict.fromkeys(names) if n != name]


@dataclass(frozen=True)
class Found:
    """The companions of one declared input."""

    input: str
    paths: tuple[str, ...]

    def declaration(self) -> str:
        """How the rule would declare them itself (Snakemake's multiext)."""
        return declaration(self.input, self.paths)


def declaration(input_path: str, paths: Iterable[str]) -> str:
    appended = [p[len(input_path) :] for p in paths if p.startswith(input_path)]
    others = [p for p in paths if not p.startswith(input_path)]
    parts = [f'"{p}"' for p in others]
    if appended:
        suffixes = ", ".join(f'"{s}"' for s in appended)
        parts.insert(0, f'multiext("{input_path}", {suffixes})')
    return ", ".join(parts)


class Companions:
    """Finds the index files of local inputs, on the submitting machine."""

    def __init__(self, workdir: str, *, enabled: bool, log: Callable[[str], None]) -> None:
        self.workdir = os.path.abspath(workdir)
        self.enabled = enabled  # --awsbatch-no-index-files turns it off
        self._announce = _Announcer(log)
        self._listings: dict[str, tuple[int, frozenset[str]]] = {}  # dir -> mtime, names
        self._lock = threading.Lock()  # the scheduler and status threads both ask
        self.listings = 0  # directory listings made (tests, benchmarks)

    def of_job(self, inputs: Iterable[str], outputs: Iterable[str]) -> list[str]:
        """Paths to stage besides `inputs`: the companions that exist of each input whose
        rule declares none of them, except the job's outputs. The run's log names each
        input's once."""
        if not self.enabled:
            return []
        inputs = list(inputs)
        found = self._find(inputs, outputs)
        for each in found:
            self._announce(each)
        return list(dict.fromkeys(p for each in found for p in each.paths))

    def failure_hint(self, inputs: Iterable[str], outputs: Iterable[str], log: list[str]) -> str:
        """For a failed job whose log says a file was missing: the files next to its inputs
        that look like theirs (same name before the suffix) and were not staged."""
        text = "".join(log)
        inputs = list(inputs)
        declared = _normal(inputs, outputs)
        # What of_job staged, found again without logging it a second time.
        found = self._find(inputs, outputs) if self.enabled else []
        staged = _normal(p for each in found for p in each.paths)
        unstaged: list[Found] = []
        for path in inputs:
            directory, name = os.path.split(os.path.normpath(path))
            prefixes = tuple(f"{s}." for s in [name, *stems(name)])
            siblings = [
                os.path.join(directory, n)
                for n in sorted(self._names(directory) or ())
                if n != name and n.startswith(prefixes)
            ]
            left = tuple(p for p in siblings if p not in staged and p not in declared)
            if left:
                unstaged.append(Found(path, left))
        every = [p for f in unstaged for p in f.paths]
        named = any(os.path.basename(p) in text for p in every)
        if not every or not (named or _MISSING.search(text)):
            return ""
        shown = ", ".join(every[:HINT_SHOWN]) + (" ..." if len(every) > HINT_SHOWN else "")
        how = "; ".join(f.declaration() for f in unstaged)
        off = "" if self.enabled else " (or drop --awsbatch-no-index-files)"
        return (
            f"\nNot staged, because its rule does not declare them: {shown} (next to its "
            f"inputs). If the command reads them, declare them as inputs: {how}{off}."
        )

    # -- helpers ---------------------------------------------------------------------

    def _find(self, inputs: list[str], outputs: Iterable[str]) -> list[Found]:
        declared, outputs = _normal(inputs), _normal(outputs)
        found = []
        for path in inputs:
            normal = os.path.normpath(path)
            if _outside(os.path.join(self.workdir, normal), self.workdir):
                continue  # the stager refuses the input itself, with the reason
            directory, name = os.path.split(normal)
            names = self._names(directory)
            if not names:
                continue
            present = [os.path.join(directory, n) for n in candidates(name) if n in names]
            if any(p in declared for p in present):
                continue  # the rule names this input's index files itself
            paths = tuple(sorted(p for p in present if p not in outputs))
            if paths:
                found.append(Found(path, paths))
        return found

    def _names(self, directory: str) -> frozenset[str] | None:
        """The file names in a directory (relative to the working directory): one listing,
        reused while the directory's mtime stays the same."""
        where = os.path.join(self.workdir, directory)
        try:
            mtime = os.stat(where).st_mtime_ns
        except OSError:
            return None
        with self._lock:
            cached = self._listings.get(directory)
            if cached and cached[0] == mtime:
                return cached[1]
        try:
            with os.scandir(where) as entries:
                names = frozenset(e.name for e in entries if e.is_file())
        except OSError:
            return None
        with self._lock:
            self.listings += 1
            # A file added within the clock's granularity of this listing may leave the
            # mtime as it was: such a listing is not kept (as git treats "racy" entries).
            if time.time_ns() - mtime > RACY_NS:
                self._listings[directory] = (mtime, names)
        return names


class StorageCompanions:
    """Storage mode: the index files next to an input in S3 go into the job beside the
    storage plugin's local copy of it (Snakemake fetches only declared files)."""

    def __init__(
        self,
        client: Any,
        *,
        enabled: bool,
        local_prefix: str,
        job_prefix: str,
        log: Callable[[str], None],
        warn: Callable[[str], None],
    ) -> None:
        self.client = client
        self.enabled = enabled
        # Where Snakemake keeps local copies of storage files, here and inside jobs
        # (--local-storage-prefix, --remote-job-local-storage-prefix).
        self.local_prefix = local_prefix
        self.job_prefix = job_prefix
        self._announce = _Announcer(log)
        self._warn = warn
        self._unlisted: set[tuple[str, str]] = set()
        self._listings: dict[tuple[str, str], dict[str, int]] = {}  # this round's
        self._lock = threading.Lock()
        self.listings = 0

    def new_round(self) -> None:
        """Objects written since the last round (upstream jobs' outputs) count."""
        with self._lock:
            self._listings.clear()

    def of_job(self, inputs: Iterable[tuple[str, str]], outputs: Iterable[str]) -> list[InputEntry]:
        """Entries for the companions in S3 of these (S3 URI, local path) inputs."""
        if not self.enabled or posixpath.isabs(self.job_prefix):
            return []
        inputs, outputs = list(inputs), set(outputs)
        declared = {uri for uri, _ in inputs}
        entries: dict[str, InputEntry] = {}
        for uri, local in inputs:
            s3 = S3Uri.parse(uri)
            where = self._job_dir(local)
            if where is None:
                continue
            directory, name = posixpath.split(s3.key)
            listing = self._listing(s3.bucket, directory)
            present = [n for n in candidates(name) if n in listing]
            uris = {n: f"s3://{s3.bucket}/{posixpath.join(directory, n)}" for n in present}
            if any(u in declared for u in uris.values()):
                continue  # the rule names this input's index files itself
            found = []
            for n in present:
                if uris[n] not in outputs:
                    path = posixpath.join(where, n)
                    entries[path] = InputEntry(path, uris[n], "", listing[n])
                    found.append(uris[n])
            if found:
                self._announce(Found(uri, tuple(sorted(found))))
        return list(entries.values())

    def _job_dir(self, local: str) -> str | None:
        """The directory, inside the job, of the storage plugin's copy of this input."""
        copy = job_copy(local, self.local_prefix, self.job_prefix)
        return None if copy is None else posixpath.dirname(copy)

    def _listing(self, bucket: str, directory: str) -> dict[str, int]:
        """Object name -> size of the objects directly below this S3 "directory"."""
        with self._lock:
            cached = self._listings.get((bucket, directory))
        if cached is not None:
            return cached
        names: dict[str, int] = {}
        prefix = f"{directory}/" if directory else ""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, Delimiter="/"
        )
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    names[item["Key"][len(prefix) :]] = int(item["Size"])
        except (BotoCoreError, ClientError) as e:
            # The storage plugin may read objects in a bucket we may not list: the job
            # runs as it would without companions, and the user hears why once.
            names = {}
            if (bucket, directory) not in self._unlisted:
                self._unlisted.add((bucket, directory))
                self._warn(
                    f"Cannot list s3://{bucket}/{prefix} ({e}): index files next to inputs "
                    "there do not travel; declare them, or allow s3:ListBucket on it"
                )
        with self._lock:
            self.listings += 1
            self._listings[(bucket, directory)] = names
        return names


class _Announcer:
    """The run log's line for each input whose companions travel, once per input."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self._log = log
        self._said: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, found: Found) -> None:
        with self._lock:
            if found.input in self._said:
                return
            self._said.add(found.input)
        names = ", ".join(posixpath.basename(p) for p in found.paths)
        self._log(
            f"Staging {found.input} with the index files next to it that its rules do not "
            f"declare: {names}. To declare them: {found.declaration()}; "
            "--awsbatch-no-index-files stages declared inputs only."
        )


def _normal(*groups: Iterable[str]) -> set[str]:
    return {os.path.normpath(p) for group in groups for p in group}


def _outside(path: str, root: str) -> bool:
    return os.path.relpath(os.path.abspath(path), root).startswith(os.pardir)
