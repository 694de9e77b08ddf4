"""The argument spec of each action plugin whose module file is docs only, against that module's
DOCUMENTATION (ansible-test cannot compare them)."""
import importlib
import sys

import pytest
import yaml

from tests.support.ansible_run import collections_path

sys.path.insert(0, collections_path())

DOCS_ONLY = ["consumer_aws", "consumer_rollout", "key_audit", "key_store", "rotation_plan", "rotation_report",
             "rotation_update"]


def documented_options(module):
    """The module's options with those of its rekey.aws doc fragments."""
    doc = yaml.safe_load(module.DOCUMENTATION)
    options = {}
    for fragment in doc.get("extends_documentation_fragment", []):
        name, dummy, variable = fragment[len("rekey.aws."):].partition(".")
        fragments = importlib.import_module("ansible_collections.rekey.aws.plugins.doc_fragments." + name)
        options.update(yaml.safe_load(getattr(fragments.ModuleDocFragment, variable.upper() or "DOCUMENTATION"))
                       .get("options", {}))
    options.update(doc["options"])
    return options


def spec_of(arg):
    return (arg.get("type", "str"), arg.get("default"), bool(arg.get("required")), arg.get("elements"),
            arg.get("choices"), sorted(arg.get("aliases", [])))


@pytest.mark.parametrize("name", DOCS_ONLY)
def test_argument_spec_matches_documentation(name):
    action = importlib.import_module("ansible_collections.rekey.aws.plugins.action." + name)
    module = importlib.import_module("ansible_collections.rekey.aws.plugins.modules." + name)
    documented = documented_options(module)
    assert sorted(action.ARGUMENT_SPEC) == sorted(documented)
    for option, doc in documented.items():
        assert spec_of(action.ARGUMENT_SPEC[option]) == spec_of(doc), (name, option)
