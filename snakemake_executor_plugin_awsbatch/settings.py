"""The plugin's settings: every field becomes `--awsbatch-<name>` and `SNAKEMAKE_AWSBATCH_<NAME>`.

Fields hold what the user typed (strings and lists of strings). Parsing into typed
values happens in `config.py`, so that a malformed value becomes one clear
`WorkflowError` instead of an argparse traceback.
"""

from dataclasses import dataclass, field
from typing import Optional

from snakemake_interface_executor_plugins.settings import ExecutorSettingsBase

from snakemake_executor_plugin_awsbatch import runtime

DEFAULT_LOG_GROUP = "/aws/batch/job"
DEFAULT_MEM_MB = 1024
DEFAULT_SPOT_RETRIES = 2
DEFAULT_UNSCHEDULABLE_TIMEOUT = 900
DEFAULT_LOG_TAIL_LINES = 40
DEFAULT_SCRATCH_ROOT = "/scratch"
DEFAULT_RUNTIME_ROOT = runtime.DEFAULT_ROOT
DEFAULT_SUBMIT_RATE = 40
DEFAULT_INPUT_CACHE = "25%"
DEFAULT_NODE_JOIN_TIMEOUT = 600


def _as_list(values: object) -> list[str]:
    return [values] if isinstance(values, str) else [str(v) for v in values]  # type: ignore[attr-defined]


def _setting(help_text: str, *, nargs: Optional[str] = None, metavar: Optional[str] = None) -> dict:
    # No `from __future__ import annotations` in this module: the settings registry
    # reads field.type at runtime and needs real types, not strings.
    meta: dict = {"help": help_text, "env_var": True}
    if nargs:
        # parse_func makes the registry hand over the list as is (with "type" it
        # would turn the whole list into one string).
        meta["nargs"] = nargs
        meta["parse_func"] = _as_list
        meta["unparse_func"] = _as_list
    if metavar:
        meta["metavar"] = metavar
    return meta


@dataclass
class ExecutorSettings(ExecutorSettingsBase):
    default_queue: str = field(
        default="default",
        metadata=_setting(
            "Batch job queue (name or ARN) for every job not routed elsewhere; "
            "normally a spot queue. Default: default.",
            metavar="QUEUE",
        ),
    )
    priority_queue: str = field(
        default="priority",
        metadata=_setting(
            "Batch job queue (name or ARN) for priority rules and for jobs whose spot "
            "attempts were all reclaimed; normally on-demand first, then spot. "
            "Default: priority.",
            metavar="QUEUE",
        ),
    )
    multinode_queue: Optional[str] = field(
        default=None,
        metadata=_setting(
            "Batch job queue (name or ARN) for rules with resources: awsbatch_nodes=N "
            "(N >= 2), which run as multi-node parallel jobs; its compute environments must "
            "be EC2 on-demand (docs/multinode.md). Default: the stack's "
            "MultiNodeJobQueueName with --awsbatch-stack, else none (such rules are refused).",
            metavar="QUEUE",
        ),
    )
    node_join_timeout: int = field(
        default=DEFAULT_NODE_JOIN_TIMEOUT,
        metadata=_setting(
            "Seconds the main node of a multi-node job waits for the other nodes to join "
            "before the job fails naming the missing ones. Default: 600.",
            metavar="SECONDS",
        ),
    )
    region: Optional[str] = field(
        default=None,
        metadata=_setting(
            "AWS region. Default: boto3's configuration chain (AWS_REGION, "
            "AWS_DEFAULT_REGION, the profile).",
            metavar="REGION",
        ),
    )
    image: Optional[str] = field(
        default=None,
        metadata=_setting(
            "Container image of every rule that names no image of its own (it must contain "
            "python with Snakemake and this plugin, see containers/Dockerfile). A rule's "
            "container: directive or awsbatch_image resource names its own image, which "
            "needs only /bin/sh (docs/tool-images.md). Required unless every rule names "
            "its image; no default.",
            metavar="IMAGE",
        ),
    )
    job_role: Optional[str] = field(
        default=None,
        metadata=_setting(
            "IAM role ARN the job containers assume (S3 access). Default: none, the "
            "instance role applies.",
            metavar="ARN",
        ),
    )
    execution_role: Optional[str] = field(
        default=None,
        metadata=_setting(
            "IAM execution role ARN for Fargate queues (pulls the image, writes logs). "
            "Required only when a queue runs on Fargate.",
            metavar="ARN",
        ),
    )
    tags: Optional[list[str]] = field(
        default=None,
        metadata=_setting(
            "Tags KEY=VALUE put on every job and propagated to its ECS task (cost "
            "allocation). The run id and rule name are always added. Default: none.",
            nargs="+",
            metavar="KEY=VALUE",
        ),
    )
    spot_retries: int = field(
        default=DEFAULT_SPOT_RETRIES,
        metadata=_setting(
            "How often Batch retries a job whose spot instance was reclaimed or whose "
            "container failed to start (0-9). A job still reclaimed after that is "
            "resubmitted once to the priority queue. Default: 2.",
            metavar="N",
        ),
    )
    priority_rules: Optional[list[str]] = field(
        default=None,
        metadata=_setting(
            "Rule names whose jobs go to the priority queue. Default: none.",
            nargs="+",
            metavar="RULE",
        ),
    )
    log_group: str = field(
        default=DEFAULT_LOG_GROUP,
        metadata=_setting(
            "CloudWatch Logs group the job containers log to and failure logs are read "
            "from. Default: /aws/batch/job.",
            metavar="GROUP",
        ),
    )
    efs: Optional[list[str]] = field(
        default=None,
        metadata=_setting(
            "EFS file system mounted into every job, FS_ID:/container/path[:ACCESS_POINT_ID] "
            "(repeatable). Default: none.",
            nargs="+",
            metavar="SPEC",
        ),
    )
    default_mem_mb: int = field(
        default=DEFAULT_MEM_MB,
        metadata=_setting(
            "Memory (MiB) for a job whose rule sets neither mem_mb nor mem. Default: 1024.",
            metavar="MIB",
        ),
    )
    unschedulable_timeout: int = field(
        default=DEFAULT_UNSCHEDULABLE_TIMEOUT,
        metadata=_setting(
            "Seconds a job may sit RUNNABLE with a MISCONFIGURATION or CAPACITY status "
            "reason before it is terminated and reported failed. Default: 900.",
            metavar="SECONDS",
        ),
    )
    log_tail_lines: int = field(
        default=DEFAULT_LOG_TAIL_LINES,
        metadata=_setting(
            "Lines of a failed job's CloudWatch log shown in the error message (the whole "
            "log is saved under .snakemake/awsbatch-logs/). Default: 40.",
            metavar="N",
        ),
    )
    s3_prefix: Optional[str] = field(
        default=None,
        metadata=_setting(
            "s3://bucket/prefix where the plugin stages workflow sources, inputs and "
            "outputs. Default: none.",
            metavar="S3_URI",
        ),
    )
    scratch_root: str = field(
        default=DEFAULT_SCRATCH_ROOT,
        metadata=_setting(
            "Host directory mounted into every job; each job works in its own unique "
            "directory below it and removes it when it ends. Default: /scratch.",
            metavar="PATH",
        ),
    )
    runtime_root: str = field(
        default=DEFAULT_RUNTIME_ROOT,
        metadata=_setting(
            "Host directory where the instances keep the job runtimes that rules' own "
            "tool images run with (mounted read-only into those jobs; the stack's "
            "RuntimeRoot). Default: /opt/snakemake-awsbatch/runtimes.",
            metavar="PATH",
        ),
    )
    stack: Optional[str] = field(
        default=None,
        metadata=_setting(
            "Name of a CloudFormation stack deployed from cloudformation/: its outputs "
            "supply the queues, the S3 prefix, the job role, the log group and the runtime "
            "root wherever the matching setting is not given. Default: none.",
            metavar="NAME",
        ),
    )
    no_arrays: bool = field(
        default=False,
        metadata=_setting(
            "Submit every job as a Batch job of its own. Default: jobs that are ready "
            "together and alike (same rule, resources, queue and image) go to Batch as one "
            "array job, one child per Snakemake job.",
        ),
    )
    no_index_files: bool = field(
        default=False,
        metadata=_setting(
            "Stage only the inputs a rule declares. Default: with each input, the plugin "
            "also stages the index files that lie next to it and are not declared "
            "(genome.fa.fai, bwa's genome.fa.bwt and the like, sample.bam.bai, genome.dict; "
            "the list is in docs/staging.md), and the run's log names them.",
        ),
    )
    input_cache: str = field(
        default=DEFAULT_INPUT_CACHE,
        metadata=_setting(
            "How much of each instance's scratch disk the jobs may share as a cache of "
            "large inputs (files of 1 MiB or more, by content), so that an input many jobs "
            "read is downloaded once per instance: a size (200GiB, 500GB), a share of the "
            "scratch file system (25%%), or 0/off. Default: 25%%.",
            metavar="SIZE|PERCENT|off",
        ),
    )
    prices: Optional[list[str]] = field(
        default=None,
        metadata=_setting(
            "Prices for the run report's cost estimate, per vCPU-hour and per GiB-hour of "
            "what jobs request, on spot and on-demand capacity: spot-vcpu-hour=P "
            "spot-gib-hour=P on-demand-vcpu-hour=P on-demand-gib-hour=P (any of them). "
            "Default: none, and no cost column.",
            nargs="+",
            metavar="KEY=PRICE",
        ),
    )
    submit_rate: int = field(
        default=DEFAULT_SUBMIT_RATE,
        metadata=_setting(
            "At most this many SubmitJob calls per second (1-50; Batch allows 50 per "
            "second for the whole account). Default: 40.",
            metavar="N",
        ),
    )
