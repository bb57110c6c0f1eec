"""Rules in their own tool-only images, on the sandbox with real containers.

Two images that hold nothing of ours: a static busybox (no libc, no Python, no bash) and
Debian with samtools (no Python). Their jobs run with the job runtime the sandbox's
instance installed from the launch template's boot script, mounted read-only.
"""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from snakemake_executor_plugin_awsbatch import runtime
from snakemake_executor_plugin_awsbatch.sandbox import testing
from tests.e2e import runs, tool_images

pytestmark = pytest.mark.e2e

SNAKEFILE = """
rule all:
    input:
        "results/upper.txt",
        "results/genome.fa.fai",
        "results/summary.txt",
        "results/report.txt",
        "results/env-busybox.txt",
        "results/env-samtools.txt",

rule upper:
    input: "data/words.txt"
    output: "results/upper.txt"
    container: "docker://{busybox}"
    shell: "tr a-z A-Z < {{input}} | LC_ALL=C sort > {{output}}; wc -l < {{input}} >> {{output}}"

rule faidx:
    input: "data/genome.fa"
    output: "results/genome.fa.fai"
    container: "docker://{samtools}"
    shell: "samtools faidx {{input}} --fai-idx {{output}}"

rule summarize:
    input: words="results/upper.txt", index="results/genome.fa.fai"
    output: "results/summary.txt"
    container: "docker://{busybox}"
    script: "scripts/summarize.py"

rule report:
    input: "results/summary.txt"
    output: "results/report.txt"
    shell: "cat {{input}} > {{output}}; echo done >> {{output}}"

ENV = (
    "(command -v python3 || echo 'no python3'; command -v python || echo 'no python'; "
    'echo "PATH=$PATH"; env | sort) > {{output}}'
)

rule env_busybox:
    output: "results/env-busybox.txt"
    container: "docker://{busybox}"
    shell: ENV

rule env_samtools:
    output: "results/env-samtools.txt"
    container: "docker://{samtools}"
    shell: ENV
"""

SCRIPT = """
words = open(snakemake.input.words).read().split()
contigs = [line.split("\\t") for line in open(snakemake.input.index)]
with open(snakemake.output[0], "w") as out:
    out.write(f"words {len(words) - 1}, last {words[-2]}\\n")
    for name, length, *_ in contigs:
        out.write(f"{name} {length}\\n")
"""

FILES = {
    "data/words.txt": "delta\nalpha\ncharlie\nbravo\n",
    "data/genome.fa": ">chr1\nACGTACGTAC\nGTACGT\n>chr2 second\nTTTTGGGGCCCCAAAA\nAC\n",
    "scripts/summarize.py": SCRIPT,
}
COMPARED = ("results/upper.txt", "results/genome.fa.fai", "results/summary.txt")
LEAKS = ("LD_LIBRARY_PATH", "LD_PRELOAD", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")


@pytest.fixture(scope="module")
def images(sandbox: testing.RunningSandbox) -> dict[str, str]:
    return {
        "busybox": tool_images.busybox_image(sandbox.state),
        "samtools": tool_images.samtools_image(sandbox.state),
    }


@pytest.fixture(scope="module")
def mixed(
    sandbox: testing.RunningSandbox,
    images: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """The mixed workflow run once through the plugin and once locally (no plugin)."""
    root = tmp_path_factory.mktemp("tool-images")
    snakefile = SNAKEFILE.format(**images)
    workflow = runs.Workflow.create(sandbox, root / "batch", snakefile, FILES)
    before = runs.Batch(sandbox).active_definitions()
    result = workflow.run(jobs=4, timeout=600)
    assert result.returncode == 0, result.output[-6000:]

    local = root / "local"
    local.mkdir()
    for name, text in {"Snakefile": snakefile, **FILES}.items():
        (local / name).parent.mkdir(parents=True, exist_ok=True)
        (local / name).write_text(text)
    reference = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", *COMPARED],
        cwd=local,
        capture_output=True,
        text=True,
    )
    assert reference.returncode == 0, reference.stdout + reference.stderr
    return {"workflow": workflow, "result": result, "local": local, "definitions": before}


def test_tool_images_give_the_same_outputs_as_a_local_run(mixed: dict[str, Any]) -> None:
    workflow, local = mixed["workflow"], mixed["local"]
    for path in COMPARED:
        assert filecmp.cmp(workflow.workdir / path, local / path, shallow=False), path
    summary = (workflow.workdir / "results/summary.txt").read_text()
    # The busybox image has no Python (see the next test): the script ran with the runtime's.
    assert summary == "words 4, last DELTA\nchr1 16\nchr2 18\n", summary
    report = (workflow.workdir / "results/report.txt").read_text()
    assert report == summary + "done\n"


@pytest.mark.parametrize(
    ("image", "path"),
    [("busybox", tool_images.BUSYBOX_PATH), ("samtools", tool_images.DEBIAN_PATH)],
)
def test_the_runtime_leaks_nothing_into_the_rules_environment(
    mixed: dict[str, Any], image: str, path: str
) -> None:
    lines = (mixed["workflow"].workdir / f"results/env-{image}.txt").read_text().splitlines()
    assert lines[:3] == ["no python3", "no python", f"PATH={path}"], lines[:3]
    variables = dict(line.split("=", 1) for line in lines[3:] if "=" in line)
    assert variables["PATH"] == path
    assert not set(LEAKS) & set(variables), variables
    assert not [v for v in variables.values() if runtime.MOUNT in v], variables


def test_each_image_has_one_job_definition_reused_by_the_next_run(
    sandbox: testing.RunningSandbox, mixed: dict[str, Any], images: dict[str, str]
) -> None:
    batch = runs.Batch(sandbox)
    jobs = batch.jobs_of_run(mixed["result"].run_id)
    assert len(jobs) == 6  # rule all runs on the submitting machine
    pages = batch.client.get_paginator("describe_job_definitions").paginate(status="ACTIVE")
    image_of = {
        f"{d['jobDefinitionName']}:{d['revision']}": d["containerProperties"]["image"]
        for page in pages
        for d in page["jobDefinitions"]
        if "containerProperties" in d  # a multi-node definition of another test has nodeProperties
    }
    by_image: dict[str, set[str]] = {}
    for job in jobs:
        definition = runs.definition_of(job)
        by_image.setdefault(image_of[definition], set()).add(definition)
    assert set(by_image) == {images["busybox"], images["samtools"], sandbox.image}
    assert all(len(definitions) == 1 for definitions in by_image.values()), by_image
    registered = batch.active_definitions()
    assert len(registered - mixed["definitions"]) <= 3

    again = mixed["workflow"].run("--forceall", jobs=4, timeout=600)
    assert again.returncode == 0, again.output[-6000:]
    assert batch.active_definitions() == registered
    used = {runs.definition_of(job) for job in batch.jobs_of_run(again.run_id)}
    assert used == {d for definitions in by_image.values() for d in definitions}


def test_the_jobs_log_names_the_image_and_the_runtime(
    sandbox: testing.RunningSandbox, mixed: dict[str, Any], images: dict[str, str]
) -> None:
    logs = sandbox.session().client("logs")
    (job,) = [
        j
        for j in runs.Batch(sandbox).jobs_of_run(mixed["result"].run_id)
        if runs.rule_of(j) == "faidx"
    ]
    events = logs.get_log_events(
        logGroupName="/aws/batch/job", logStreamName=job["container"]["logStreamName"]
    )["events"]
    text = "\n".join(event["message"] for event in events)
    assert f"image {images['samtools']}, job runtime {runtime.MOUNT}/{runtime.key()}" in text


FAILING = """
rule fail:
    output: "results/never.txt"
    container: "docker://{busybox}"
    shell: "echo 'busybox says no' >&2; exit 3"
"""


def test_a_failure_names_the_image_that_ran(
    sandbox: testing.RunningSandbox, images: dict[str, str], tmp_path: Path
) -> None:
    workflow = runs.Workflow.create(sandbox, tmp_path / "fail", FAILING.format(**images))
    result = workflow.run(jobs=1)

    assert result.returncode != 0
    assert f"image {images['busybox']}, failed" in result.output, result.output[-4000:]
    assert "busybox says no" in result.output
    (job_log,) = workflow.saved_job_logs()
    assert f"image {images['busybox']}, job runtime" in job_log.read_text()


HELLO = """
rule hello:
    output: "hello.txt"
    container: "docker://{busybox}"
    shell: "echo hello from $(uname -s) > {{output}}"
"""


def test_apptainer_given_to_snakemake_is_never_started_in_a_job(
    sandbox: testing.RunningSandbox, images: dict[str, str], tmp_path: Path
) -> None:
    # For local runs users give --software-deployment-method apptainer; on Batch the job
    # is the rule's container already (and this machine has no apptainer to start).
    workflow = runs.Workflow.create(sandbox, tmp_path / "sdm", HELLO.format(**images))
    result = workflow.run("--software-deployment-method", "apptainer", jobs=1)

    assert result.returncode == 0, result.output[-4000:]
    assert (workflow.workdir / "hello.txt").read_text() == "hello from Linux\n"


BAD = """
rule hello:
    output: "hello.txt"
    container: "{image}"
    resources: {resources}
    shell: "echo hello > {{output}}"
"""


def _without_runtime_queue(sandbox: testing.RunningSandbox) -> str:
    """A queue whose compute environment's instances install no job runtime."""
    batch = sandbox.session().client("batch")
    name = "e2e-no-runtime"
    if batch.describe_job_queues(jobQueues=[name])["jobQueues"]:
        return name
    spot = sandbox.env["SNAKEMAKE_AWSBATCH_DEFAULT_QUEUE"]
    (queue,) = batch.describe_job_queues(jobQueues=[spot])["jobQueues"]
    (env,) = batch.describe_compute_environments(
        computeEnvironments=[queue["computeEnvironmentOrder"][0]["computeEnvironment"]]
    )["computeEnvironments"]
    resources = {k: v for k, v in env["computeResources"].items() if k != "tags"}
    created = batch.create_compute_environment(
        computeEnvironmentName=name,
        type="MANAGED",
        state="ENABLED",
        computeResources=resources,
        serviceRole=env["serviceRole"],
    )
    batch.create_job_queue(
        jobQueueName=name,
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[
            {"order": 1, "computeEnvironment": created["computeEnvironmentArn"]}
        ],
    )
    return name


@pytest.mark.parametrize("case", ["malformed image", "no runtime on the queue"])
def test_an_unusable_image_is_one_error_line_before_any_submission(
    sandbox: testing.RunningSandbox, images: dict[str, str], tmp_path: Path, case: str
) -> None:
    if case == "malformed image":
        image, resources = "docker://quay.io/BioContainers/Samtools:1.21", "runtime=5"
        says = "is not a valid image reference"
    else:
        queue = _without_runtime_queue(sandbox)
        image = f"docker://{images['busybox']}"
        resources = f"awsbatch_queue='{queue}'"
        says = f"compute environment {queue} of queue {queue} provides none"
    batch = runs.Batch(sandbox)
    before = {j["jobId"] for q in batch.queue_names() for j in _listed(batch, q)}
    workflow = runs.Workflow.create(
        sandbox, tmp_path / "bad", BAD.format(image=image, resources=resources)
    )
    result = workflow.run(jobs=1)

    assert result.returncode == 1, result.output[-3000:]
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and says in errors[0], result.output[-3000:]
    assert "Traceback" not in result.output
    assert {j["jobId"] for q in batch.queue_names() for j in _listed(batch, q)} == before


def _listed(batch: runs.Batch, queue: str) -> list[dict[str, Any]]:
    pages = batch.client.get_paginator("list_jobs")
    return [
        summary
        for status in runs.ALL_STATUSES
        for page in pages.paginate(jobQueue=queue, jobStatus=status)
        for summary in page["jobSummaryList"]
    ]
