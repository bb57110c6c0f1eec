"""A job's Snakemake resources -> what Batch needs: vCPUs, memory, GPUs, timeout.

Snakemake keys: `threads` (or `_cores` for group jobs) -> VCPU; `mem_mib`,
`mem_mb` or `mem` -> MEMORY in MiB; `gpu` or `nvidia_gpu` -> GPU; `runtime`
(minutes) -> `timeout.attemptDurationSeconds`. No runtime, no timeout.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from snakemake_executor_plugin_awsbatch.errors import ConfigError

MIN_EC2_MEMORY_MIB = 4
MIN_TIMEOUT_SECONDS = 60

# Valid Fargate (vCPU, memory MiB) pairs: for each vCPU size, the allowed memory values.
FARGATE_MEMORY: dict[float, list[int]] = {
    0.25: [512, 1024, 2048],
    0.5: list(range(1024, 4096 + 1, 1024)),
    1: list(range(2048, 8192 + 1, 1024)),
    2: list(range(4096, 16384 + 1, 1024)),
    4: list(range(8192, 30720 + 1, 1024)),
    8: list(range(16384, 61440 + 1, 4096)),
    16: list(range(32768, 122880 + 1, 8192)),
}


@dataclass(frozen=True)
class JobResources:
    vcpus: float
    memory_mib: int
    gpus: int
    timeout_seconds: int | None

    def describe(self) -> str:
        gpu = f", {self.gpus} GPU" if self.gpus else ""
        return f"{_fmt_vcpus(self.vcpus)} vCPU, {self.memory_mib} MiB{gpu}"

    def requirements(self) -> list[dict[str, str]]:
        reqs = [
            {"type": "VCPU", "value": _fmt_vcpus(self.vcpus)},
            {"type": "MEMORY", "value": str(self.memory_mib)},
        ]
        if self.gpus:
            reqs.append({"type": "GPU", "value": str(self.gpus)})
        return reqs


def _fmt_vcpus(vcpus: float) -> str:
    return str(int(vcpus)) if float(vcpus).is_integer() else str(vcpus)


def _number(rule: str, key: str, value: Any, unit: str) -> float:
    if isinstance(value, bool):
        value = int(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"Rule {rule}: resource {key}={value!r} is not a number of {unit}; write e.g. {key}=4"
        ) from None
    if number < 0 or math.isnan(number) or math.isinf(number):
        raise ConfigError(f"Rule {rule}: resource {key}={value!r} must be a positive number")
    return number


def _memory_mib(rule: str, res: Mapping[str, Any], default_mb: int) -> int:
    # Snakemake derives mem_mb and mem_mib from `mem` ("5MB", "3 GB"); Batch wants MiB.
    if res.get("mem_mib") is not None:
        mib = _number(rule, "mem_mib", res["mem_mib"], "MiB")
    elif res.get("mem_mb") is not None:
        mib = _number(rule, "mem_mb", res["mem_mb"], "MB") * 1e6 / 2**20
    elif res.get("mem") is not None:
        raise ConfigError(
            f"Rule {rule}: resource mem={res['mem']!r} could not be read as a size; "
            "write e.g. mem='4GB' or mem_mb=4000"
        )
    else:
        mib = default_mb
    return max(MIN_EC2_MEMORY_MIB, math.ceil(mib))


def job_resources(
    rule: str, res: Mapping[str, Any], threads: int | None, default_mem_mb: int
) -> JobResources:
    """Read a job's resources; `rule` names the job in error messages."""
    cores = res.get("_cores", threads)
    vcpus = _number(rule, "threads", cores if cores is not None else 1, "threads")
    gpu_key = "gpu" if res.get("gpu") is not None else "nvidia_gpu"
    gpus = _number(rule, gpu_key, res.get(gpu_key) or 0, "GPUs")
    if not gpus.is_integer():
        raise ConfigError(f"Rule {rule}: resource {gpu_key}={gpus:g} must be a whole number")
    timeout = None
    if res.get("runtime") is not None:
        minutes = _number(rule, "runtime", res["runtime"], "minutes")
        # Batch refuses timeouts under 60 s.
        timeout = max(MIN_TIMEOUT_SECONDS, math.ceil(minutes * 60))
    return JobResources(
        vcpus=max(1, math.ceil(vcpus)),
        memory_mib=_memory_mib(rule, res, default_mem_mb),
        gpus=int(gpus),
        timeout_seconds=timeout,
    )


def fit_fargate(rule: str, wanted: JobResources) -> JobResources:
    """Round up to the smallest valid Fargate vCPU/memory pair; refuse GPUs and oversize."""
    if wanted.gpus:
        raise ConfigError(
            f"Rule {rule}: asks for {wanted.gpus} GPU but its queue runs on Fargate, which "
            "has no GPUs; send it to an EC2 queue with resources: awsbatch_queue='QUEUE'"
        )
    for vcpus, memories in FARGATE_MEMORY.items():
        if vcpus < wanted.vcpus:
            continue
        for memory in memories:
            if memory >= wanted.memory_mib:
                return replace(wanted, vcpus=vcpus, memory_mib=memory)
    raise ConfigError(
        f"Rule {rule}: asks for {wanted.describe()}, more than Fargate offers "
        "(at most 16 vCPU, 122880 MiB); send it to an EC2 queue"
    )
