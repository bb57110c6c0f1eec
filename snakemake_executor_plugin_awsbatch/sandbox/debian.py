"""The Debian mirror and suite this machine's apt uses, read from its own apt sources.

The image builder bootstraps from the same mirror, so it works wherever apt works
(a corporate mirror, a snapshot) and no host name is written into the project.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from snakemake_executor_plugin_awsbatch.sandbox.errors import SandboxError

APT_DIR = Path("/etc/apt")


@dataclass(frozen=True)
class Source:
    mirror: str
    suite: str


def host_source(apt_dir: Path = APT_DIR) -> Source:
    """The first main (non-security, non-updates) `deb` source in apt's configuration."""
    candidates = [
        *_deb822_sources(sorted((apt_dir / "sources.list.d").glob("*.sources"))),
        *_one_line_sources(
            [apt_dir / "sources.list", *sorted(apt_dir.glob("sources.list.d/*.list"))]
        ),
    ]
    for source in candidates:
        if not source.suite.endswith(("-security", "-updates", "-backports")):
            return source
    raise SandboxError(
        f"no Debian/Ubuntu `deb` source found in {apt_dir}/sources.list(.d); "
        "the image builder bootstraps from the mirror apt uses"
    )


def _deb822_sources(files: list[Path]) -> list[Source]:
    """Sources from deb822 files: paragraphs of `Field: value` lines, blank-line separated."""
    found: list[Source] = []
    for path in files:
        for paragraph in path.read_text().split("\n\n"):
            fields = _fields(paragraph)
            if fields.get("enabled", "yes").lower() == "no":
                continue
            if "deb" not in fields.get("types", "").split():
                continue
            uris, suites = fields.get("uris", "").split(), fields.get("suites", "").split()
            found.extend(Source(uri, suite) for uri in uris[:1] for suite in suites)
    return found


def _fields(paragraph: str) -> dict[str, str]:
    fields = {}
    for line in paragraph.splitlines():
        if line.startswith(("#", " ", "\t")) or ":" not in line:
            continue
        key, value = line.split(":", 1)
        fields[key.strip().lower()] = value.strip()
    return fields


def _one_line_sources(files: list[Path]) -> list[Source]:
    """Sources from `deb [options] URI SUITE COMPONENT...` lines."""
    found = []
    for path in files:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = line.split("#", 1)[0].split()
            if not words or words[0] != "deb":
                continue
            words = words[1:]
            if words and words[0].startswith("["):
                # Options in brackets: skip up to the word that closes them.
                while words and not words[0].endswith("]"):
                    words = words[1:]
                words = words[1:]
            if len(words) >= 2:
                found.append(Source(words[0], words[1]))
    return found
