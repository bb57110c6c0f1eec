# The job runtime for tool-only images (docs/tool-images.md): a self-contained Python with
# the Snakemake, storage plugin and job-side runner of the job image, that any image with
# /bin/sh runs from the instance. Built FROM the job image (containers/Dockerfile), whose
# Python environment is what it copies; the result holds only the runtime's tree.
#
#   KEY=$(python -m snakemake_executor_plugin_awsbatch.runtime key)   # on the submitting machine
#   docker build -f containers/runtime.Dockerfile \
#       --build-arg JOB_IMAGE=<account>.dkr.ecr.<region>.amazonaws.com/snakemake-awsbatch:<tag> \
#       --build-arg KEY=$KEY -t <account>.dkr.ecr.<region>.amazonaws.com/snakemake-awsbatch-runtime:$KEY .
#   docker push <account>.dkr.ecr.<region>.amazonaws.com/snakemake-awsbatch-runtime:$KEY
#
# KEY makes the build fail when the job image holds another Snakemake or plugin than the
# submitting machine (the key names both). The instances install <repository>:<KEY> at boot
# (cloudformation/launch-template.yaml). The local sandbox builds it from its job image.
ARG JOB_IMAGE
FROM ${JOB_IMAGE} AS build
ARG KEY=""
# bundle.py needs ldd (libc-bin), patchelf and, to strip extension modules, binutils.
RUN command -v patchelf >/dev/null || { apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends patchelf binutils \
        && rm -rf /var/lib/apt/lists/*; }
RUN python -m snakemake_executor_plugin_awsbatch.runtime.bundle /runtime ${KEY:+--expect-key "$KEY"}

FROM scratch
COPY --from=build /runtime/ /.snakemake-awsbatch/
