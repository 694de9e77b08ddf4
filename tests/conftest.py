"""Fixtures shared by every test. Keep them thin: their logic lives in tests/support/."""
import pytest

from tests.support.endpoint import read_log, start_endpoint, stop_endpoint


@pytest.fixture(scope="session")
def iam_endpoint(tmp_path_factory):
    """The strict IAM/STS endpoint (tools/iam_endpoint.py) on 127.0.0.1, one per session."""
    proc, endpoint = start_endpoint("127.0.0.1", 0, tmp_path_factory.mktemp("iam-endpoint") / "state.json")
    yield endpoint
    rc = stop_endpoint(proc)
    assert rc == 0, f"iam_endpoint exited with {rc}; its output:\n{read_log(proc)}"


@pytest.fixture
def endpoint(iam_endpoint):
    """The session's endpoint with no faults and zeroed counts, before and after the test."""
    iam_endpoint.clear_faults()
    iam_endpoint.reset_counts()
    yield iam_endpoint
    iam_endpoint.clear_faults()
    iam_endpoint.reset_counts()
