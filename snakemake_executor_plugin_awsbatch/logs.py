"""A job's CloudWatch log: the whole of it to a file, the tail for the error message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from snakemake_executor_plugin_awsbatch.jobside.log import PREFIX as RUNNER_PREFIX

# GetLogEvents pages are at most 1 MB; a runaway log is cut off rather than
# fetched without end.
MAX_PAGES = 200


def fetch_log(logs: Any, group: str, stream: str) -> list[str]:
    """All lines of a stream, oldest first, following nextForwardToken to the end."""
    lines: list[str] = []
    token: str | None = None
    for _ in range(MAX_PAGES):
        kwargs: dict[str, Any] = {
            "logGroupName": group,
            "logStreamName": stream,
            "startFromHead": True,
        }
        if token:
            kwargs["nextToken"] = token
        page = logs.get_log_events(**kwargs)
        lines.extend(event["message"].rstrip("\n") for event in page.get("events", []))
        # The same token twice means the end of the stream.
        if not page.get("events") or page.get("nextForwardToken") in (None, token):
            break
        token = page["nextForwardToken"]
    return lines


def save_log(lines: list[str], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def printed(lines: list[str]) -> list[str]:
    """The lines the job's command printed (the runner's own lines left out: its phase
    timings say nothing about the failure, and its error is reported apart)."""
    return [line for line in lines if not line.startswith(RUNNER_PREFIX)]


def tail(lines: list[str], count: int) -> list[str]:
    """The last `count` lines the job's command printed."""
    return printed(lines)[-count:] if count else []
