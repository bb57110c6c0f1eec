#!/bin/sh
# Entrypoint of the SANDBOX job image only (the AWS image in containers/Dockerfile has none).
# moto tells each job container where it listens (MOTO_HTTP_ENDPOINT, set by the sandbox's
# moto to http://127.0.0.1:<port>; job containers share the host network). boto3 reads
# AWS_ENDPOINT_URL, so the job reaches the sandbox without any endpoint or credential in
# the job definition; the dummy credentials are in /root/.aws.
if [ -z "${AWS_ENDPOINT_URL:-}" ] && [ -n "${MOTO_HTTP_ENDPOINT:-}" ]; then
    AWS_ENDPOINT_URL="$MOTO_HTTP_ENDPOINT"
    export AWS_ENDPOINT_URL
fi
exec "$@"
