"""docs/awx-survey.json, the survey of an AWX job template running rekey.aws.rotate, against the
role's argument specs: every question sets a role variable, in a form the role takes (AWX sends
text answers as strings: list variables as comma-separated text, booleans as "true"/"false"), with
the same choices, and defaults the argument specs accept."""
import json
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.ansible_run import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.rekey.aws.plugins.module_utils._preflight import LISTS, normalized  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SURVEY = json.loads((ROOT / "docs" / "awx-survey.json").read_text())
SPECS = yaml.safe_load((ROOT / "roles" / "rotate" / "meta" / "argument_specs.yml").read_text())["argument_specs"]
# The variables of the role's three entry points (the playbook runs all three).
OPTIONS = dict(item for spec in SPECS.values() for item in spec.get("options", {}).items())
QUESTIONS = SURVEY["spec"]


def test_the_survey_has_questions_each_for_a_distinct_variable():
    assert QUESTIONS and len({q["variable"] for q in QUESTIONS}) == len(QUESTIONS)


@pytest.mark.parametrize("question", QUESTIONS, ids=[q["variable"] for q in QUESTIONS])
def test_each_question_sets_a_role_variable_in_a_form_the_role_takes(question):
    option = OPTIONS.get(question["variable"])
    assert option, "%s is not a variable of the role" % question["variable"]
    kind, answer = question["type"], question["default"]
    if option["type"] == "list":
        assert kind in ("text", "textarea") and question["variable"] in LISTS, question
        # What the role makes of a comma-separated answer.
        assert normalized({question["variable"]: "A1, B2"})[question["variable"]] == ["A1", "B2"]
    elif option["type"] == "bool":
        assert kind == "multiplechoice" and sorted(question["choices"]) == ["false", "true"], question
    elif option["type"] == "int":
        assert kind == "integer" and isinstance(answer, int) and question["min"] <= answer <= question["max"]
    else:
        assert option["type"] == "str" and kind in ("text", "multiplechoice"), question
    if "choices" in option:
        assert kind == "multiplechoice" and set(question["choices"]) <= set(option["choices"]), question
    if kind == "multiplechoice":
        assert answer in question["choices"], question
