#!/usr/bin/env bash
# What `make demo` runs inside `python -m snakemake_executor_plugin_awsbatch.sandbox run --`:
# a pipeline from workflows/ with --executor awsbatch on the sandbox, then its results copied
# out of the sandbox's S3 (which disappears with the sandbox) into <workflow>/results/.
#
#   workflows/demo/run_demo.sh [WORKFLOW_DIR] [SNAKEMAKE_ARGS...]
#
# Everything about where jobs go comes from the environment the sandbox sets
# (AWS_ENDPOINT_URL, SNAKEMAKE_AWSBATCH_*); nothing here is sandbox-specific but the copy.
set -euo pipefail

workflow=$(cd "${1:-$(dirname "$0")}" && pwd)
shift || true
: "${SNAKEMAKE_AWSBATCH_S3_PREFIX:?run this inside the sandbox: sandbox run -- $0}"
# A fresh prefix per run, so a second demo really runs the jobs again.
prefix="${SNAKEMAKE_AWSBATCH_S3_PREFIX%/}/demo-$(date +%Y%m%d-%H%M%S)"

cd "$workflow"
echo "demo: running $workflow with --executor awsbatch (image $SNAKEMAKE_AWSBATCH_IMAGE)"
# The --default-storage-* options stage files in S3 until the plugin does it itself
# from SNAKEMAKE_AWSBATCH_S3_PREFIX (see docs/workflows.md).
snakemake --executor awsbatch --jobs 4 \
    --default-storage-provider s3 --default-storage-prefix "$prefix" "$@"

python - "$prefix" "$workflow" <<'PY'
"""Copy the run's outputs from the sandbox's S3 into the workflow directory."""
import pathlib
import sys

import boto3

prefix, workflow = sys.argv[1], pathlib.Path(sys.argv[2])
bucket, _, key_prefix = prefix.removeprefix("s3://").partition("/")
s3 = boto3.client("s3")
copied = []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key_prefix + "/"):
    for item in page.get("Contents", []):
        relative = item["Key"][len(key_prefix) + 1 :]
        target = workflow / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, item["Key"], str(target))
        copied.append(relative)
results = sorted(p for p in copied if p.startswith("results/"))
print(f"demo: {len(copied)} files copied from {prefix} (the sandbox's S3) to {workflow}/")
print(f"demo: results in {workflow}/results/:")
for path in results:
    print(f"  {path}")
PY
