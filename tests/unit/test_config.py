"""Settings -> validated config: every malformed value is one clear error line."""

import pytest

from snakemake_executor_plugin_awsbatch.config import (
    EfsMount,
    load_config,
    parse_efs,
    parse_s3_prefix,
    parse_tags,
)
from snakemake_executor_plugin_awsbatch.errors import ConfigError
from snakemake_executor_plugin_awsbatch.settings import ExecutorSettings


def test_defaults_are_documented_values() -> None:
    config = load_config(ExecutorSettings())
    assert (config.default_queue, config.priority_queue) == ("default", "priority")
    assert config.spot_retries == 2 and config.log_group == "/aws/batch/job"
    assert config.image is None and config.region is None and config.tags == {}


def test_tags_parse_from_cli_list_and_env_string() -> None:
    assert parse_tags(["project=wgs", "owner=alice"]) == {"project": "wgs", "owner": "alice"}
    # An env var arrives as one string.
    assert parse_tags(["project=wgs owner=alice"]) == {"project": "wgs", "owner": "alice"}
    assert parse_tags(["empty="]) == {"empty": ""}


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("novalue", "is not KEY=VALUE"),
        ("=x", "is not KEY=VALUE"),
        ("aws:cost=1", "not starting with 'aws:'"),
        ("k=semi;colon", "value of tag 'k' is invalid"),
    ],
)
def test_malformed_tags_are_refused(value: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match="--awsbatch-tags") as error:
        parse_tags([value])
    assert fragment in str(error.value)


def test_too_many_tags_are_refused() -> None:
    with pytest.raises(ConfigError, match="at most 47"):
        parse_tags([f"k{i}=v" for i in range(48)])


def test_efs_specs() -> None:
    assert parse_efs(["fs-0123456789abcdef0:/mnt/ref:fsap-0123456789abcdef0"]) == (
        EfsMount("fs-0123456789abcdef0", "/mnt/ref", "fsap-0123456789abcdef0"),
    )
    assert parse_efs(["fs-01234567:/data"]) == (EfsMount("fs-01234567", "/data", None),)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("fs-01234567", "is not FS_ID:/container/path"),
        ("vol-01234567:/mnt", "is not an EFS id"),
        ("fs-01234567:relative", "must be an absolute directory"),
        ("fs-01234567:/mnt:ap-1", "is not an access point id"),
    ],
)
def test_malformed_efs_specs_are_refused(spec: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match="--awsbatch-efs") as error:
        parse_efs([spec])
    assert fragment in str(error.value)


def test_s3_prefix() -> None:
    location = parse_s3_prefix("s3://my-bucket/runs/a/")
    assert location is not None and (location.bucket, location.key) == ("my-bucket", "runs/a")
    assert location.uri("x", "y.txt") == "s3://my-bucket/runs/a/x/y.txt"
    with pytest.raises(ConfigError, match="is not an S3 URI"):
        parse_s3_prefix("my-bucket/runs")


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        (ExecutorSettings(spot_retries=10), "--awsbatch-spot-retries: 10 is out of range"),
        (ExecutorSettings(default_mem_mb=2), "--awsbatch-default-mem-mb: 2 is out of range"),
        (ExecutorSettings(submit_rate=51), "--awsbatch-submit-rate: 51 is out of range; use 1"),
        (ExecutorSettings(submit_rate=0), "--awsbatch-submit-rate: 0 is out of range; use 1"),
        (ExecutorSettings(default_queue=" "), "--awsbatch-default-queue is empty"),
        (ExecutorSettings(scratch_root="tmp"), "--awsbatch-scratch-root"),
    ],
)
def test_out_of_range_settings_are_refused(settings: ExecutorSettings, fragment: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(settings)
    assert fragment in str(error.value)


def test_empty_strings_from_profiles_mean_unset() -> None:
    config = load_config(ExecutorSettings(job_role="", image="  ", region=""))
    assert config.job_role is None and config.image is None and config.region is None
