"""`python -m snakemake_executor_plugin_awsbatch.sandbox ...`"""

from snakemake_executor_plugin_awsbatch.sandbox.cli import main

raise SystemExit(main())
