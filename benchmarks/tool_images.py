"""Start-to-command time of jobs in tool-only images against the default image, on the sandbox.

    .venv/bin/snakemake-awsbatch-sandbox run -- .venv/bin/python benchmarks/tool_images.py --jobs 8

One workflow, `--jobs` jobs in each of three images, run together at `-j --parallel`
(default 4; `--parallel 1` measures each job alone):

- `default`: the sandbox's job image (Python, Snakemake and the plugin inside);
- `busybox`: a static busybox, nothing else (the job runtime comes from the instance);
- `debian-samtools`: Debian with samtools and no Python (likewise).

Each rule's command first reads, inside its container, the kernel's uptime and the start
time of the container's first process (/proc/1/stat): their difference is the time from
the container's start to the rule's command (the runner's start, the manifest, scratch,
inputs and the job's Snakemake), on one clock. Also reports the job runtime's size.
Prints a table and writes JSON (`--json`, default benchmarks/tool-images-results.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from snakemake_executor_plugin_awsbatch import runtime  # noqa: E402
from snakemake_executor_plugin_awsbatch.sandbox.state import StateDir  # noqa: E402
from tests.e2e import tool_images  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SNAKEFILE = """
N = range({jobs})

IMAGES = ["default", "busybox", "debian-samtools"]

rule all:
    input: expand("results/{{image}}/{{i}}.txt", image=IMAGES, i=N)

MEASURE = "read up _ < /proc/uptime; set -- $(cat /proc/1/stat); echo $up ${{{{22}}}} > {{output}}"

rule default:
    input: "data/in.txt"
    output: "results/default/{{i}}.txt"
    shell: MEASURE

rule busybox:
    input: "data/in.txt"
    output: "results/busybox/{{i}}.txt"
    container: "docker://{busybox}"
    shell: MEASURE

rule samtools:
    input: "data/in.txt"
    output: "results/debian-samtools/{{i}}.txt"
    container: "docker://{samtools}"
    shell: MEASURE
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--jobs", type=int, default=8, help="jobs per image")
    p.add_argument("--parallel", type=int, default=4, help="Snakemake's --jobs")
    p.add_argument("--json", default="benchmarks/tool-images-results.json", help="'' for none")
    args = p.parse_args()
    if "SNAKEMAKE_AWSBATCH_SANDBOX_DIR" not in os.environ:
        sys.exit("run this in the sandbox's environment: snakemake-awsbatch-sandbox run -- ...")
    state = StateDir.resolve(os.environ["SNAKEMAKE_AWSBATCH_SANDBOX_DIR"])
    images = {
        "busybox": tool_images.busybox_image(state),
        "samtools": tool_images.samtools_image(state),
    }
    with tempfile.TemporaryDirectory(prefix="tool-images-bench-") as tmp:
        work = Path(tmp)
        (work / "Snakefile").write_text(SNAKEFILE.format(jobs=args.jobs, **images))
        (work / "data").mkdir()
        (work / "data" / "in.txt").write_text("input\n")
        prefix = f"{os.environ['SNAKEMAKE_AWSBATCH_S3_PREFIX'].rstrip('/')}/tool-{os.getpid()}"
        started = time.monotonic()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "snakemake",
                "--executor",
                "awsbatch",
                "--jobs",
                str(args.parallel),
                "--awsbatch-s3-prefix",
                prefix,
                "--default-resources",
                "mem_mb=256",
            ],
            cwd=work,
            capture_output=True,
            text=True,
        )
        wall = time.monotonic() - started
        if done.returncode != 0:
            sys.exit(f"the run failed:\n{(done.stdout + done.stderr)[-4000:]}")
        results = {name: _measures(work / "results" / name) for name in _IMAGES}
    described = json.loads(
        (
            Path(os.environ["SNAKEMAKE_AWSBATCH_RUNTIME_ROOT"]) / runtime.key() / "RUNTIME.json"
        ).read_text()
    )
    report = {
        "command": " ".join(sys.argv),
        "jobs_per_image": args.jobs,
        "parallel": args.parallel,
        "wall_seconds": round(wall, 1),
        "runtime": {k: described[k] for k in ("key", "files", "bytes")},
        "start_to_command_seconds": {
            name: {**_stats(values), "runs": values} for name, values in results.items()
        },
    }
    print(f"{args.jobs} jobs per image, -j {args.parallel}, wall {wall:.1f} s")
    print(
        f"job runtime {described['key']}: {described['files']} files, "
        f"{described['bytes'] / 1e6:.1f} MB"
    )
    print("container start -> rule command, s: median (min-max)")
    for name, values in results.items():
        s = _stats(values)
        print(f"  {name:16} {s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


_IMAGES = ("default", "busybox", "debian-samtools")


def _measures(directory: Path) -> list[float]:
    values = []
    for path in sorted(directory.glob("*.txt")):
        uptime, start_ticks = path.read_text().split()
        values.append(round(float(uptime) - int(start_ticks) / CLOCK_TICKS, 2))
    return values


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 2),
        "min": min(values),
        "max": max(values),
    }


if __name__ == "__main__":
    main()
