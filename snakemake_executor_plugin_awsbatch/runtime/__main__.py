"""`python -m snakemake_executor_plugin_awsbatch.runtime key`: the job runtime this
installation's tool-image jobs need (build and deploy it as docs/tool-images.md says)."""

import sys

from snakemake_executor_plugin_awsbatch import runtime


def main(argv: list[str]) -> int:
    if argv != ["key"]:
        print(
            "usage: python -m snakemake_executor_plugin_awsbatch.runtime key\n"
            "prints the key of the job runtime that this installation's jobs in tool-only "
            "images need (build it with containers/runtime.Dockerfile)",
            file=sys.stderr,
        )
        return 2
    print(runtime.key())
    return 0


sys.exit(main(sys.argv[1:]))
