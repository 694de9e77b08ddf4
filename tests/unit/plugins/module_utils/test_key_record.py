"""The stored-key record every backend holds (pure logic). The Secrets Manager and Parameter Store
calls and their error mapping are tested against the local endpoint in
tests/integration/test_key_store.py."""
import datetime
import json
import sys

import pytest

from tests.support.ansible_run import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.rekey.aws.plugins.module_utils import _key_record as kr  # noqa: E402
from ansible_collections.rekey.aws.plugins.module_utils import _secretsmanager as sm  # noqa: E402

SECRET = "unit/Secret+Value0000000000000000000000"


def test_make_record_is_the_agreed_json_shape():
    now = datetime.datetime(2024, 5, 31, 14, 0, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    record = kr.make_record("app", "AKIAUNITTEST00000000", SECRET, now=now)
    assert record == {"user_name": "app", "access_key_id": "AKIAUNITTEST00000000", "secret_access_key": SECRET,
                      "stored_at": "2024-05-31T12:00:05Z"}
    assert json.loads(kr.dump_record(record)) == record


def test_parse_record_round_trip():
    record = kr.make_record("app", "AKIAUNITTEST00000000", SECRET)
    assert kr.parse_record(kr.dump_record(record), "here") == record


@pytest.mark.parametrize("text, why", [
    ("secret_access_key=" + SECRET, "not JSON"),
    (json.dumps([SECRET]), "not a JSON object"),
    (json.dumps({"user_name": "app", "access_key_id": "AKIAUNITTEST00000000"}), "missing or empty: secret_access_key"),
    (json.dumps({"user_name": "", "access_key_id": 5, "secret_access_key": SECRET}),
     "missing or empty: user_name, access_key_id"),
])
def test_parse_record_names_the_location_and_never_quotes_content(text, why):
    with pytest.raises(kr.KeyStoreError) as caught:
        kr.parse_record(text, "/keys/app.vault")
    message = str(caught.value)
    assert message == "/keys/app.vault does not hold a rekey.aws key record (%s)" % why
    assert SECRET not in message


def test_same_key_ignores_stored_at_only():
    record = kr.make_record("app", "AKIAUNITTEST00000000", SECRET)
    assert kr.same_key(record, "app", "AKIAUNITTEST00000000", SECRET)
    assert not kr.same_key(record, "app", "AKIAUNITTEST00000001", SECRET)
    assert not kr.same_key(record, "app", "AKIAUNITTEST00000000", SECRET + "x")
    assert not kr.same_key(record, "other", "AKIAUNITTEST00000000", SECRET)


def test_check_owner_refuses_another_users_record():
    record = kr.make_record("app-a", "AKIAUNITTEST00000000", SECRET)
    kr.check_owner(record, "app-a", "x")
    with pytest.raises(kr.KeyStoreError, match=r"^x holds the key of IAM user 'app-a', not 'app-b': give each user "
                                               r"its own location \(use \{user_name\} in it\)$"):
        kr.check_owner(record, "app-b", "x")


def test_expand_location_replaces_only_the_placeholder():
    assert kr.expand_location("/k/{user_name}/{user_name}.vault", "app") == "/k/app/app.vault"
    assert kr.expand_location("/k/{other}.vault", "app") == "/k/{other}.vault"
    assert sm.default_secret_name("app") == "rekey/app"


@pytest.mark.parametrize("name", ["app", "a", "svc+deploy=1,x.y@corp-2_z", "u" * 64, "..x"])
def test_user_name_accepts_iam_names(name):
    assert kr.user_name_problem(name) is None


@pytest.mark.parametrize("name", ["", "u" * 65, "a/b", "../etc", "app\n", "app name", "ä", None, 5])
def test_user_name_refuses_others(name):
    assert kr.user_name_problem(name) == (
        "user name %r is not an IAM user name: expected 1 to 64 letters, digits or +=,.@_-" % (name,))


@pytest.mark.parametrize("name", [".", ".."])
def test_user_name_refuses_directory_names(name):
    assert kr.user_name_problem(name) == "user name %r is refused: in a path it would name a directory" % name
