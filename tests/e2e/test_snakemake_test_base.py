"""Snakemake's own test base for executor plugins (`snakemake.common.tests`), against the
sandbox, through Snakemake's Python API: staged (with and without a shared file system
assumed, as the API lets a caller say) and with S3 storage.

The Python API always passes a working directory, so before jobs ran in the submitting
machine's path of it, and the staged cases failed.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from typing import Any

import pytest
from snakemake.common.tests import TestWorkflowsBase, TestWorkflowsLocalStorageBase
from snakemake.settings import types as settings
from snakemake_interface_common.plugin_registry.plugin import TaggedSettings

from snakemake_executor_plugin_awsbatch import ExecutorSettings
from snakemake_executor_plugin_awsbatch.sandbox import testing

pytestmark = pytest.mark.e2e


def sandbox_settings(env: Mapping[str, str]) -> ExecutorSettings:
    """The settings the sandbox exports as SNAKEMAKE_AWSBATCH_* (the API reads no
    environment variables: a caller gives every setting)."""
    given = {
        field.name: env[name]
        for field in dataclasses.fields(ExecutorSettings)
        if (name := f"SNAKEMAKE_AWSBATCH_{field.name.upper()}") in env
    }
    return ExecutorSettings(**given)


class _OnTheSandbox:
    sandbox: testing.RunningSandbox

    @pytest.fixture(autouse=True)
    def _sandbox(self, sandbox: testing.RunningSandbox, sandbox_env: dict) -> None:
        self.sandbox = sandbox

    def get_executor(self) -> str:
        return "awsbatch"

    def get_executor_settings(self) -> ExecutorSettings:
        return sandbox_settings(self.sandbox.env)

    def get_remote_execution_settings(self) -> settings.RemoteExecutionSettings:
        # The base checks every 0 s; a second spares the test machine's two cores.
        return settings.RemoteExecutionSettings(seconds_between_status_checks=1)


class TestStaged(_OnTheSandbox, TestWorkflowsLocalStorageBase):
    __test__ = True

    def get_assume_shared_fs(self) -> bool:
        return False


class TestStagedSharedFsAssumed(_OnTheSandbox, TestWorkflowsLocalStorageBase):
    """The base's default: the caller says the file system is shared (it is not)."""

    __test__ = True


class TestS3Storage(_OnTheSandbox, TestWorkflowsBase):
    __test__ = True

    def get_assume_shared_fs(self) -> bool:
        return False

    def get_default_storage_provider(self) -> str:
        return "s3"

    def get_default_storage_prefix(self) -> str:
        base = self.sandbox.env["SNAKEMAKE_AWSBATCH_S3_PREFIX"].rstrip("/")
        return f"{base}/test-base-{uuid.uuid4().hex[:8]}"

    def get_default_storage_provider_settings(self) -> dict[str, Any]:
        from snakemake_storage_plugin_s3 import StorageProviderSettings

        tagged = TaggedSettings()
        tagged.register_settings(
            StorageProviderSettings(
                endpoint_url=self.sandbox.env["AWS_ENDPOINT_URL"],
                access_key=self.sandbox.env["AWS_ACCESS_KEY_ID"],
                secret_key=self.sandbox.env["AWS_SECRET_ACCESS_KEY"],
            )
        )
        return {"s3": tagged}
