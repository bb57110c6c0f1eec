"""Snakemake resources -> Batch resource requirements and timeout."""

import pytest

from snakemake_executor_plugin_awsbatch.errors import ConfigError
from snakemake_executor_plugin_awsbatch.resources import JobResources, fit_fargate, job_resources


def test_threads_memory_gpu_runtime() -> None:
    res = job_resources("r", {"_cores": 8, "mem_mib": 16000, "gpu": 2, "runtime": 30}, 8, 1024)
    assert res == JobResources(vcpus=8, memory_mib=16000, gpus=2, timeout_seconds=1800)
    assert res.requirements() == [
        {"type": "VCPU", "value": "8"},
        {"type": "MEMORY", "value": "16000"},
        {"type": "GPU", "value": "2"},
    ]


def test_defaults_no_timeout_and_default_memory() -> None:
    res = job_resources("r", {}, None, 1024)
    assert res == JobResources(vcpus=1, memory_mib=1024, gpus=0, timeout_seconds=None)


def test_mem_mb_is_converted_like_snakemake_does() -> None:
    # 4000 MB are 3815 MiB (Snakemake's own mem_mib for mem_mb=4000).
    assert job_resources("r", {"mem_mb": 4000}, 1, 1024).memory_mib == 3815


def test_tiny_memory_is_raised_to_the_batch_minimum_and_short_runtime_to_60s() -> None:
    res = job_resources("r", {"mem_mib": 1, "runtime": 0.1}, 1, 1024)
    assert res.memory_mib == 4 and res.timeout_seconds == 60


def test_nvidia_gpu_alias() -> None:
    assert job_resources("r", {"nvidia_gpu": 1}, 1, 1024).gpus == 1


@pytest.mark.parametrize(
    ("resources", "fragment"),
    [
        ({"mem_mb": "lots"}, "resource mem_mb='lots' is not a number of MB"),
        ({"runtime": "soon"}, "resource runtime='soon' is not a number of minutes"),
        ({"gpu": 1.5}, "gpu=1.5 must be a whole number"),
        ({"mem": "huge"}, "mem='huge' could not be read"),
        ({"mem_mib": -5}, "must be a positive number"),
    ],
)
def test_unparseable_resources_name_the_rule(resources: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=r"^Rule bwa_mem: ") as error:
        job_resources("bwa_mem", resources, 1, 1024)
    assert fragment in str(error.value)


@pytest.mark.parametrize(
    ("vcpus", "memory", "expected"),
    [(1, 100, (1, 2048)), (3, 5000, (4, 8192)), (2, 16384, (2, 16384)), (8, 17000, (8, 20480))],
)
def test_fargate_rounds_up_to_a_valid_pair(vcpus: int, memory: int, expected: tuple) -> None:
    fitted = fit_fargate("r", JobResources(vcpus, memory, 0, None))
    assert (fitted.vcpus, fitted.memory_mib) == expected


def test_fargate_refuses_gpu_and_oversize() -> None:
    with pytest.raises(ConfigError, match="Fargate, which has no GPUs"):
        fit_fargate("r", JobResources(1, 1024, 1, None))
    with pytest.raises(ConfigError, match="more than Fargate offers"):
        fit_fargate("r", JobResources(32, 1024, 0, None))
