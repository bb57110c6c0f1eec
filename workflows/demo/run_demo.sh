#!/usr/bin/env bash
# What `make demo` runs inside `python -m snakemake_executor_plugin_awsbatch.sandbox run --`:
# a pipeline from workflows/ with the awsbatch profile, on the sandbox.
#
#   workflows/demo/run_demo.sh [WORKFLOW_DIR] [SNAKEMAKE_ARGS...]
#
# Nothing here is sandbox-specific: where jobs go, the image and the S3 prefix come from
# the environment the sandbox sets (AWS_ENDPOINT_URL, SNAKEMAKE_AWSBATCH_*), exactly as a
# user's environment or profile supplies them on AWS. The plugin stages the files through
# S3 and brings the outputs back, so the results land in the workflow's own directory.
set -euo pipefail

profiles=$(cd "$(dirname "$0")/../profiles" && pwd)
workflow=$(cd "${1:-$(dirname "$0")}" && pwd)
shift || true
: "${SNAKEMAKE_AWSBATCH_S3_PREFIX:?run this inside the sandbox: sandbox run -- $0}"

cd "$workflow"
echo "demo: running $workflow with --executor awsbatch (image $SNAKEMAKE_AWSBATCH_IMAGE)"
snakemake --profile "$profiles/awsbatch" "$@"

echo "demo: results in $workflow/results/ (a second run finds them up to date;"
echo "demo: add --forceall to run every job again):"
find results -type f | sort | sed 's/^/  /'
if [ -f results/report/summary.tsv ]; then
    echo "demo: the calls against the planted truth (results/report/summary.tsv):"
    sed 's/^/  /' results/report/summary.tsv
fi
