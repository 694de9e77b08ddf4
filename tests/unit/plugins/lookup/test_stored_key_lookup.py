"""rekey.aws.stored_key's pure parts: its documented options and the checks on terms and templates."""
import sys

import pytest
import yaml
from ansible.errors import AnsibleLookupError

from tests.support.ansible_run import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.rekey.aws.plugins.lookup import stored_key  # noqa: E402
from ansible_collections.rekey.aws.plugins.module_utils import _connection  # noqa: E402


def test_lookup_reads_every_connection_option_it_documents():
    doc = yaml.safe_load(stored_key.DOCUMENTATION)
    assert "rekey.aws._connection" in doc["extends_documentation_fragment"]
    own = set(doc["options"])
    assert own == {"_terms", "backend", "path", "secret_name", "parameter_name"}
    assert not own & set(_connection.connection_argspec())


def test_terms_must_be_iam_user_names():
    assert stored_key.LookupModule._users(["app-a", "app-b"]) == ["app-a", "app-b"]
    with pytest.raises(AnsibleLookupError, match="needs at least one IAM user name"):
        stored_key.LookupModule._users([])
    with pytest.raises(AnsibleLookupError, match=r"^user name '\.\./x' is not an IAM user name"):
        stored_key.LookupModule._users(["app", "../x"])


def test_several_users_need_the_placeholder():
    template = stored_key.LookupModule._template
    assert template("path", "/k/app.vault", ["app"]) == "/k/app.vault"
    assert template("path", "/k/{user_name}.vault", ["a", "b"]) == "/k/{user_name}.vault"
    with pytest.raises(AnsibleLookupError, match=r"^secret_name 'rekey/app' must contain \{user_name\} to look up "
                                                 r"several users \(a, b\)$"):
        template("secret_name", "rekey/app", ["a", "b"])
