"""The decisions about consumers held in AWS (_aws_consumers): one target per parameter or secret,
the JSON value, keep / write / restore, and what the role reads from the results. Table-driven;
the calls themselves run against the strict endpoint (tests/integration/test_aws_consumers.py)."""
import json

import pytest

from rotation_fixtures import NEW, OLD

from ansible_collections.rekey.aws.plugins.module_utils import _aws_consumers as aws
from ansible_collections.rekey.aws.plugins.module_utils import _dry_run as dry_run
from ansible_collections.rekey.aws.plugins.module_utils import _host_rollout as rollout
from ansible_collections.rekey.aws.plugins.module_utils._consumers import with_defaults


def entry(host, name="app", fmt="ssm_parameter", target="/app/key", user="app", **fields):
    c = with_defaults(dict({"name": name, "iam_user": user, "format": fmt, "service": "app",
                            "health_url": "http://127.0.0.1:8080/health"}, **fields))
    c.update({"parameter": target} if fmt == "ssm_parameter" else {"secret_id": target})
    c.update(host=host, old_key_id=OLD, new_key_id=NEW, target_key_id=NEW, action="rotate", phase="distributing")
    return c


def test_one_target_per_parameter_or_secret_whatever_the_hosts():
    entries = [entry("h1"), entry("h2"), entry("h3"), entry("h1", "other", "secretsmanager_secret", "app/key"),
               dict(entry("h2", "file"), format="credentials", path="/etc/app/credentials")]
    found = aws.targets(entries)
    assert [(t["format"], t["name"], t["hosts"]) for t in found] == [
        ("ssm_parameter", "/app/key", ["h1", "h2", "h3"]), ("secretsmanager_secret", "app/key", ["h1"])]
    assert found[0]["consumers"] == ["h1 app", "h2 app", "h3 app"]
    assert (found[0]["old_key_id"], found[0]["new_key_id"]) == (OLD, NEW)


def test_the_value_is_one_json_object_with_the_configured_fields():
    [t] = aws.targets([entry("h1", access_key_id_field="id", secret_access_key_field="secret")])
    text = aws.value_text(t, NEW, "s3cr3t")
    assert json.loads(text) == {"id": NEW, "secret": "s3cr3t"}
    assert aws.held_key_id(t, text) == NEW


@pytest.mark.parametrize("text, expected", [
    (None, None), ("", None), ("not json", None), ('["x"]', None), ('{"aws_access_key_id": 7}', None),
    ('{"other": "AKIA"}', None), ('{"aws_access_key_id": ""}', None), ('{"aws_access_key_id": "%s"}' % OLD, OLD)])
def test_held_key_id_reads_only_the_id_field(text, expected):
    [t] = aws.targets([entry("h1")])
    assert aws.held_key_id(t, text) == expected


WRITE_CASES = [
    ("holds_the_old_key", True, OLD, NEW, "write", False),
    ("unreadable_value", True, None, NEW, "write", False),
    ("resumed_already_written", True, NEW, NEW, "keep", False),
    ("check_mode_no_new_key_yet", True, None, None, "write", False),
    ("missing", False, None, NEW, "none", True),
]


@pytest.mark.parametrize("case", WRITE_CASES, ids=[c[0] for c in WRITE_CASES])
def test_write_decision(case):
    _id, exists, held, new, action, problem = case
    [t] = aws.targets([entry("h1")])
    got_action, got_problem = aws.write_decision(t, exists, held, new)
    assert got_action == action
    assert bool(got_problem) is problem
    if problem:
        assert "parameter /app/key (IAM user app) does not exist" in got_problem


RESTORE_CASES = [
    ("holds_the_new_key", NEW, True, OLD, "restore", None),
    ("never_written", OLD, True, "AKIAEARLIER", "keep", None),
    ("put_back_already", OLD, True, NEW, "keep", None),
    ("no_new_key", None, False, None, "keep", None),
    ("no_earlier_value", NEW, False, None, "none", "has no earlier value to put back"),
    ("earlier_value_holds_another_key", NEW, True, "AKIAOTHER", "none", "holds key AKIAOTHER, not the old key"),
]


@pytest.mark.parametrize("case", RESTORE_CASES, ids=[c[0] for c in RESTORE_CASES])
def test_restore_decision(case):
    _id, held_now, previous_exists, held_before, action, problem = case
    [t] = aws.targets([entry("h1", "app", "secretsmanager_secret", "app/key")])
    got_action, got_problem = aws.restore_decision(t, held_now, previous_exists, held_before, OLD, NEW)
    assert got_action == action
    if problem:
        assert problem in got_problem and got_problem.startswith("secret app/key (IAM user app)")
    else:
        assert got_problem is None


def test_results_name_hosts_and_users_and_never_a_secret():
    [t, s] = aws.targets([entry("h1"), entry("h2"), entry("h2", "b", "secretsmanager_secret", "b", user="b")])
    results = [aws.result(t, "none", None, None, "parameter /app/key (IAM user app): denied"),
               aws.result(s, "write", OLD, NEW)]
    assert aws.failed_hosts(results) == {"h1": ["h1: parameter /app/key (IAM user app): denied"],
                                         "h2": ["h2: parameter /app/key (IAM user app): denied"]}
    assert aws.unrestored_users(results) == ["app"]
    assert [r["changed"] for r in results] == [False, True]
    assert aws.diff(results)[1] == {"before_header": "secretsmanager_secret b", "after_header": "secretsmanager_secret b",
                                    "before": "access_key_id: %s\n" % OLD, "after": "access_key_id: %s\n" % NEW}


def test_a_bad_connection_option_is_named():
    with pytest.raises(aws.AwsConsumerError, match="rotate_aws: .*retries"):
        aws.connection_params({"retries": "many"})
    assert aws.connection_params({"region": "eu-west-1"})["region"] == "eu-west-1"


def test_the_host_half_writes_no_file_for_them_and_applies_them_on_rollback():
    consumers = [entry("h1"), dict(entry("h1", "file"), format="credentials", path="/etc/app/credentials")]
    files, in_aws = rollout.files_and_aws(consumers)
    assert ([c["name"] for c in files], [c["name"] for c in in_aws]) == (["file"], ["app"])
    outcome = rollout.written(rollout.started(consumers, 0), {"files": [{"name": "file", "existed": False}]}, in_aws)
    assert outcome["existed"] == {"file": False, "app": True}
    assert [c["name"] for c in rollout.restorable(consumers, outcome["existed"])] == ["app", "file"]


def test_before_any_write_their_check_needs_no_file():
    checks = rollout.health_checks([entry("h1"), dict(entry("h1", "file"), format="credentials", path="/etc/a")],
                                   None, existing_files_only=True)
    assert [c.get("requires") for c in checks] == [None, "/etc/a"]


def test_check_mode_preview_names_the_parameter_and_the_apply():
    preview = dry_run.host_preview("h1", [entry("h1")], {"files": []}, settled=[])
    [e] = preview["consumers"]
    assert (e["file"], e["path"], e["apply"]) == ("in_aws", "ssm_parameter /app/key", "restart service app")
    assert dry_run.preview_lines(preview) == [
        "h1 app (IAM user app, key %s -> %s): ssm_parameter /app/key written once from the controller, not on the "
        "host; restart service app" % (OLD, NEW)]
