import sys

from snakemake_executor_plugin_awsbatch.jobside.runner import main

sys.exit(main())
