"""What a few LIST requests say about many keys, to spare one HEAD request per file.

Keys are grouped by their "directory" (the prefix up to the last '/'); a group of at least
LIST_MIN_FILES keys is listed with a delimiter, so only that directory's own objects come
back, and never more pages than the group itself needs (twice over, plus one), so a huge
directory holding few of our keys costs little. A key in a fully listed directory that is
not in the listing is known to be absent; otherwise its size and ETag are known.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any, Literal

from .client import S3Client
from .objects import Listed, list_children
from .uri import S3Uri

LIST_MIN_FILES = 8
LIST_PAGE = 1000
ABSENT: Literal["absent"] = "absent"
UNKNOWN: Literal["unknown"] = "unknown"


class KnownObjects:
    def __init__(self) -> None:
        self._listed: dict[tuple[str, str], Listed] = {}
        self._complete: set[tuple[str, str]] = set()  # (bucket, directory prefix)

    @classmethod
    def gather(
        cls,
        client: S3Client,
        uris: Iterable[S3Uri],
        run_all: Callable[[Callable[..., Any], list[tuple]], list[Any]],
    ) -> KnownObjects:
        """List, in parallel, the directories that hold enough of `uris` to be worth it."""
        groups: dict[tuple[str, str], int] = defaultdict(int)
        for s3 in uris:
            groups[(s3.bucket, _directory(s3.key))] += 1
        calls = [
            (client, bucket, prefix, 2 * (n // LIST_PAGE) + 1 + 1)
            for (bucket, prefix), n in groups.items()
            if n >= LIST_MIN_FILES
        ]
        known = cls()
        for (_, bucket, prefix, _), outcome in zip(
            calls, run_all(list_children, calls), strict=True
        ):
            if isinstance(outcome, BaseException):
                continue  # e.g. no s3:ListBucket permission: fall back to HEAD requests
            found, complete = outcome
            known._listed.update({(bucket, key): listed for key, listed in found.items()})
            if complete:
                known._complete.add((bucket, prefix))
        return known

    def get(self, s3: S3Uri) -> Listed | Literal["absent", "unknown"]:
        listed = self._listed.get((s3.bucket, s3.key))
        if listed is not None:
            return listed
        return ABSENT if (s3.bucket, _directory(s3.key)) in self._complete else UNKNOWN


def _directory(key: str) -> str:
    head, sep, _ = key.rpartition("/")
    return head + sep
