"""tests/BUDGET and the verdict make test prints after its last pytest run."""
import pytest

from tests.support.budget import BUDGET_FILE, read_budget, verdict

BUDGET = {"measured_minutes": 20.0, "limit_minutes": 60.0}


def test_the_budget_file_of_the_repo_reads():
    budget = read_budget(BUDGET_FILE)
    assert 0 < budget["measured_minutes"] < budget["limit_minutes"] < 90


@pytest.mark.parametrize("elapsed_s, within, starts", [
    (19 * 60 + 5, True, "make test wall time 19m05s"),
    (26 * 60, True, "slower than measured: make test wall time 26m00s"),
    (60 * 60, True, "slower than measured"),
    (60 * 60 + 1, False, "OVER BUDGET: make test wall time 60m01s"),
])
def test_verdict(elapsed_s, within, starts):
    ok, line = verdict(elapsed_s, BUDGET)
    assert ok is within
    assert line.startswith(starts), line
    assert "limit 60 min (tests/BUDGET)" in line


@pytest.mark.parametrize("text, error", [
    ("measured_minutes = 20\n", "no limit_minutes=MINUTES line"),
    ("measured_minutes = 20\nlimit_minutes = soon\n", "'limit_minutes = soon' is not KEY=MINUTES"),
    ("measured_minutes = 0\nlimit_minutes = 60\n", "'measured_minutes = 0' is not KEY=MINUTES"),
], ids=["no-limit", "not-a-number", "zero"])
def test_a_bad_budget_file_names_the_line(tmp_path, text, error):
    path = tmp_path / "BUDGET"
    path.write_text("# comment\n" + text)
    with pytest.raises(ValueError, match=error):
        read_budget(path)
