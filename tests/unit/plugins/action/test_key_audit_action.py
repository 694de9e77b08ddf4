"""rekey.aws.key_audit's argument spec against the module's DOCUMENTATION (ansible-test cannot
compare them: the module file is docs only)."""
import sys

import yaml

from tests.support.ansible_run import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.rekey.aws.plugins.action import key_audit as action  # noqa: E402
from ansible_collections.rekey.aws.plugins.modules import key_audit as module  # noqa: E402


def test_argument_spec_matches_documentation():
    documented = yaml.safe_load(module.DOCUMENTATION)["options"]
    assert sorted(action.ARGUMENT_SPEC) == sorted(documented)
    for name, doc in documented.items():
        arg = action.ARGUMENT_SPEC[name]
        assert (arg.get("type", "str"), arg.get("default"), bool(arg.get("required")), arg.get("elements")) == (
            doc.get("type", "str"), doc.get("default"), bool(doc.get("required")), doc.get("elements")), name
