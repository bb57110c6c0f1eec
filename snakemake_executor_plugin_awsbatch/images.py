"""Which image a job runs in: the default job image, or the rule's own tool image.

A rule names its image with the `awsbatch_image` resource, which wins, or with
Snakemake's `container:` directive (also the workflow-wide one); every other rule runs
the default image (`--awsbatch-image`), which holds Python, Snakemake and this plugin.
Any other image runs as the Batch job itself with the job runtime from the instance
(runtime/__init__.py), so it needs nothing of ours: a tool and /bin/sh are enough.

Snakemake's own container support (`--software-deployment-method apptainer`) would run
the rule's command in apptainer inside the job; the job already is the rule's container,
so the method is dropped from what the job's Snakemake is told.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from snakemake_executor_plugin_awsbatch.errors import ConfigError

IMAGE_RESOURCE = "awsbatch_image"
DOCKER_SCHEME = "docker://"
# docker/distribution's reference grammar: [host[:port]/]path[:tag][@digest], path
# components lowercase.
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REFERENCE = re.compile(
    rf"^(?:{_HOST}(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
MAX_NAME = 255
# Snakemake's method that would start apptainer inside the job, and its old name; the
# option's spellings (Snakemake forwards it to jobs as --deployment-method).
_CONTAINER_METHODS = frozenset({"apptainer", "singularity"})
_METHOD_FLAGS = ("--software-deployment-method", "--deployment-method", "--deployment", "--sdm")


@dataclass(frozen=True)
class JobImage:
    reference: str  # what Batch pulls
    tool: bool  # runs with the instance's job runtime


def job_image(job: Any, default: str | None) -> JobImage:
    """The image of a Snakemake job (single or group); ConfigError if it has none or a
    malformed one, or if a group's rules name different images."""
    # A group job's members are Snakemake jobs of their own rules.
    members = list(getattr(job, "jobs", None) or [job]) if job.is_group() else [job]
    found: dict[str, tuple[JobImage, str]] = {}
    for member in members:
        image = _member_image(member, default)
        found.setdefault(image.reference, (image, member.rule.name))
    if len(found) > 1:
        listed = ", ".join(f"{ref} (rule {rule})" for ref, (_, rule) in found.items())
        raise ConfigError(
            f"Group job {job.name} runs as one Batch job in one image, but its rules name "
            f"{listed}: give them the same container: (or awsbatch_image), or split the group"
        )
    if not found:  # an empty group cannot be submitted; Snakemake never makes one
        raise ConfigError(f"Group job {job.name} has no jobs")
    image, _ = next(iter(found.values()))
    return image


def _member_image(job: Any, default: str | None) -> JobImage:
    rule = job.rule.name
    named = job.resources.get(IMAGE_RESOURCE)
    if named:
        reference = parse_reference(str(named), f"Rule {rule}: resource {IMAGE_RESOURCE}")
        return JobImage(reference, reference != default)
    # Snakemake expands wildcards in the rule's container: (False: `container: None`).
    url = getattr(job, "container_img_url", None)
    if url:
        reference = parse_reference(str(url), f"Rule {rule}: container:")
        return JobImage(reference, reference != default)
    if not default:
        raise ConfigError(
            f"Rule {rule} has no image: give it a container: (any image with /bin/sh) or "
            "set --awsbatch-image (or SNAKEMAKE_AWSBATCH_IMAGE) to an image with Snakemake "
            "and this plugin, e.g. one built from containers/Dockerfile"
        )
    return JobImage(default, False)


def parse_reference(value: str, where: str) -> str:
    """A Docker/OCI image reference (`docker://` removed); ConfigError naming `where`."""
    text = value.strip()
    if text.startswith(DOCKER_SCHEME):
        text = text[len(DOCKER_SCHEME) :]
    elif "://" in text or text.endswith(".sif") or text.startswith(("/", ".")):
        raise ConfigError(
            f"{where} {value!r} is not an image in a Docker/OCI registry, which is what AWS "
            "Batch runs; name one as docker://REGISTRY/REPOSITORY:TAG"
        )
    if not _REFERENCE.match(text) or len(_repository(text)) > MAX_NAME:
        raise ConfigError(
            f"{where} {value!r} is not a valid image reference; write "
            "[REGISTRY/]REPOSITORY[:TAG][@sha256:DIGEST] with a lowercase repository, e.g. "
            "docker://quay.io/biocontainers/samtools:1.21--h50ea8bc_0"
        )
    return text


def _repository(reference: str) -> str:
    """The reference without its digest and tag (a port's colon is not a tag's)."""
    name = reference.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


def without_container_methods(command: str) -> str:
    """The job command without apptainer/singularity among its deployment methods.

    The command is the one Snakemake formats for the job (`python -m snakemake ...`);
    the flag's values are the words after it up to the next option.
    """
    words = command.split(" ")
    flag = next((f for f in _METHOD_FLAGS if f in words), None)
    if flag is None:
        return command
    start = words.index(flag)
    end = start + 1
    while end < len(words) and not words[end].startswith("-"):
        end += 1
    kept = [w for w in words[start + 1 : end] if w.strip("'") not in _CONTAINER_METHODS]
    given = [flag, *kept] if kept else []
    return " ".join([*words[:start], *given, *words[end:]])
