"""The `sandbox` fixture: one local AWS Batch (moto + podman) for the whole test session.

It starts the sandbox once (state directory under pytest's temporary directory), or
reuses the live sandbox that $SNAKEMAKE_AWSBATCH_SANDBOX_DIR names (then leaves it
running), and takes down what it started at the end of the session. Mark tests that use
it with `@pytest.mark.e2e`.

    def test_something(sandbox):
        sandbox.env            # AWS_ENDPOINT_URL, region, dummy credentials, SNAKEMAKE_AWSBATCH_*
        sandbox.state_dir      # the sandbox's state directory
        sandbox.scratch_dir    # host directory mounted into every job
        sandbox.stack_name     # the deployed CloudFormation stack, for --awsbatch-stack
        sandbox.session()      # a boto3 session talking to the sandbox
        sandbox.job_containers()
"""

from collections.abc import Iterator

import pytest

from snakemake_executor_plugin_awsbatch.sandbox import testing


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[testing.RunningSandbox]:
    running = testing.acquire(tmp_path_factory.mktemp("e2e"))
    try:
        yield running
    finally:
        testing.release()


@pytest.fixture
def sandbox_env(sandbox: testing.RunningSandbox, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The sandbox's variables set in os.environ for one test (for code that reads them)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in sandbox.env.items():
        monkeypatch.setenv(name, value)
    return sandbox.env
