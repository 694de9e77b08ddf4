"""Fixtures shared by every test. Keep them thin: their logic lives in tests/support/."""
from __future__ import annotations

import os
import time

import pytest

from tests.support.budget import read_budget, verdict
from tests.support.endpoint import read_log, start_endpoint, stop_endpoint

_BUDGET_LINE = pytest.StashKey[str]()


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


# --- the time budget: only when make test says when it started (REKEY_TEST_STARTED, epoch s) ---

def _started() -> float | None:
    value = os.environ.get("REKEY_TEST_STARTED", "")
    return float(value) if value.replace(".", "", 1).isdigit() else None


def _is_xdist_worker(config) -> bool:
    return hasattr(config, "workerinput")


def pytest_sessionfinish(session, exitstatus):
    started = _started()
    if started is None or _is_xdist_worker(session.config):
        return
    within, line = verdict(time.time() - started, read_budget())
    session.config.stash[_BUDGET_LINE] = line
    if not within and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(trylast=True)  # after the slowest cases, just before pytest's summary line
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    line = config.stash.get(_BUDGET_LINE, None)
    if line:
        terminalreporter.write_sep("=", "time budget")
        terminalreporter.write_line(line, bold=True, red=line.startswith("OVER"))
