"""Consumer validation and the role variable checks run before any AWS call (_consumers,
_preflight), table-driven."""
import os

import pytest
import yaml

from rotation_fixtures import consumer, settings

from ansible_collections.rekey.aws.plugins.module_utils import _consumers, _preflight

SPECS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..", "roles", "rotate", "meta",
                     "argument_specs.yml")
with open(SPECS) as spec_file:
    CONSUMERS_OPTION = yaml.safe_load(spec_file)["argument_specs"]["distribute"]["options"]["rotate_consumers"]
WHERE = 'host web1, consumer "app" (rotate_consumers[0])'


def problems(*consumers, is_file=lambda path: False):
    return _consumers.consumer_problems("web1", list(consumers), "/inv", is_file)


# (id, consumer fields, the exact problems)
CONSUMER_CASES = [
    ("valid", {}, []),
    ("bad_name", {"name": "my app"},
     ['host web1, consumer "my app" (rotate_consumers[0]): name "my app" is not valid: expected letters, digits, ".", '
      '"_" or "-"']),
    ("no_name", {"name": None, "service": "app"},
     ['host web1, consumer null (rotate_consumers[0]): name null is not valid: expected letters, digits, ".", "_" or '
      '"-"']),
    ("no_iam_user", {"iam_user": ""}, [WHERE + ": iam_user is missing: expected the IAM user whose key it holds"]),
    ("relative_path", {"path": "etc/app"}, [WHERE + ': path "etc/app" is not an absolute path on the host']),
    ("mode_as_number", {"mode": 384}, [WHERE + ': mode 384 is not a quoted octal string: write it as "0600" (YAML reads '
                                               'an unquoted 0600 as the number 384)']),
    ("mode_too_wide", {"mode": "0644"}, [WHERE + ': mode "0644" is not allowed for a file holding a secret: expected at '
                                                 'most "0600" (owner read/write only)']),
    ("mode_0400_allowed", {"mode": "0400"}, []),
    ("env_bad_names", {"format": "env", "env_names": {"access_key_id": "1KEY"}},
     [WHERE + ': env_names.access_key_id "1KEY" is not a valid variable name',
      WHERE + ": env_names.secret_access_key null is not a valid variable name"]),
    ("template_missing", {"format": "template"},
     [WHERE + ": format template needs template: expected the controller path of a Jinja template"]),
    ("template_not_a_file", {"format": "template", "template": "creds.j2"},
     [WHERE + ': template "creds.j2" is not a file on the controller (looked for /inv/creds.j2)']),
    ("restart_without_service", {"service": ""}, [WHERE + ": apply restart needs service: expected the service name"]),
    ("command_without_command", {"apply": "command"},
     [WHERE + ": apply command needs apply_command: expected the command to run"]),
    ("apply_none_needs_nothing", {"apply": "none", "service": ""}, []),
    ("no_health_check", {"health_url": ""}, [WHERE + ": no health check: expected health_url, health_command or both"]),
    ("health_url_not_http", {"health_url": "ftp://x"}, [WHERE + ': health_url "ftp://x" is not an http:// or https:// '
                                                                'URL']),
    ("health_timeout_zero", {"health_timeout_s": 0}, [WHERE + ": health_timeout_s 0 is not valid: expected at least 1 "
                                                              "second"]),
    ("health_timeout_string", {"health_timeout_s": "5"}, []),
]


@pytest.mark.parametrize("case", CONSUMER_CASES, ids=[c[0] for c in CONSUMER_CASES])
def test_consumer_problem_names_host_consumer_index_and_value(case):
    _id, fields, expected = case
    assert problems(consumer(**fields)) == expected


def test_template_relative_to_the_inventory_that_is_a_file_passes():
    assert problems(consumer(format="template", template="creds.j2"), is_file=lambda p: p == "/inv/creds.j2") == []


def test_name_used_twice_on_a_host():
    assert problems(consumer("app"), consumer("app", path="/etc/b")) == [
        'host web1, consumer "app" (rotate_consumers[1]): name "app" is used twice on this host: expected unique names']


def test_index_counts_every_element_of_rotate_consumers():
    # The role's template counts only the mappings (Jinja's loop.index0 in a filtered loop).
    assert problems("junk", consumer(name="a b")) == [
        'host web1, consumer "a b" (rotate_consumers[1]): name "a b" is not valid: expected letters, digits, ".", "_" '
        'or "-"']


def test_schema_problems_come_from_the_role_schema():
    found = _consumers.schema_problems("web1", [consumer(format="yaml")], CONSUMERS_OPTION)
    assert len(found) == 1 and found[0].startswith(WHERE + ": ") and "format" in found[0] and "yaml" in found[0]


def test_rotate_consumers_not_a_list():
    [problem] = _consumers.spec_problems("web1", "oops")
    assert problem.startswith("host web1: ") and "rotate_consumers" in problem


@pytest.mark.parametrize("changes,expected", [
    ({"rotate_verify_consecutive": 0}, ["rotate_verify_consecutive is 0: expected a whole number of at least 1"]),
    ({"rotate_max_age_days": "-1"}, ["rotate_max_age_days is -1: expected a whole number of at least 0"]),
    ({"rotate_retire_key_ids": ["akia-lower"]}, ['rotate_retire_key_ids: "akia-lower" is not an access key id: expected '
                                                 '16-128 upper-case letters and digits']),
    ({"rotate_store_dir": "keys"}, ['rotate_store_dir "keys" is not an absolute path on the controller']),
    ({"rotate_store_dir": "keys", "rotate_store_backend": "secretsmanager"}, []),
    ({"rotate_users": ["ghost"]}, ['rotate_users names "ghost" but no consumer of the hosts in rotate_hosts (all) holds '
                                   'its key: known users are app, billing']),
])
def test_settings_problems(changes, expected):
    hostvars = {"web1": {"rotate_consumers": [consumer(), consumer("b", user="billing")]}}
    found = _preflight.preflight_problems(settings(**changes), ["web1"], hostvars, CONSUMERS_OPTION, [],
                                          "/root/r.json", lambda p: False)
    assert found == expected


def test_report_path_target_group_and_hosts():
    found = _preflight.settings_problems(settings(rotate_report_path="r-{run_id}.json", rotate_hosts="none*"), [],
                                         ["db1", "db2"], "r-1.json")
    assert found == ['rotate_target_group "rekey_rotate_targets" already holds hosts (db1, db2): expected a group name '
                     'the inventory does not use, which prepare fills',
                     'rotate_report_path "r-{run_id}.json" is not an absolute path on the controller',
                     'rotate_hosts "none*" matches no host in the inventory']


def test_selected_users():
    hostvars = {"a": {"rotate_consumers": [consumer(user="zed"), consumer("b", user="app")]},
                "b": {"rotate_consumers": [consumer(user="app"), "junk"]}}
    assert _preflight.selected_users([], ["a", "b"], hostvars) == ["app", "zed"]
    assert _preflight.selected_users(["zed", "zed"], ["a", "b"], hostvars) == ["zed"]


@pytest.mark.parametrize("given,expected", [
    (["app", "billing"], ["app", "billing"]),
    ("app", ["app"]),
    ("app, billing ,", ["app", "billing"]),  # an AWX survey's text field
    ("", []), (None, []), ([], []),
])
def test_list_variables_also_come_as_comma_separated_strings(given, expected):
    s = _preflight.normalized(settings(rotate_users=given, rotate_retire_key_ids=given))
    assert s["rotate_users"] == expected and s["rotate_retire_key_ids"] == expected
    assert _preflight.selected_users(s["rotate_users"], [], {}) == sorted(set(expected))


AWX_REFUSAL = ('this run is AWX/Tower job 42 (awx_job_id is set) and rotate_store_backend is vault_file: its store '
               '"/root/.rekey-aws/keys" is in the job\'s container, which is thrown away after the job, so a rotation '
               'killed half way could not be finished by a later job. Use rotate_store_backend=ssm (AWS Parameter '
               'Store) or rotate_store_backend=secretsmanager (AWS Secrets Manager), or set '
               'rotate_store_dir_outlives_job=true when rotate_store_dir is on storage that outlives the job')


@pytest.mark.parametrize("changes,job_vars,expected", [
    ({}, {}, None),                                                    # not a job: the file store is fine
    ({}, {"awx_job_id": None, "tower_job_id": ""}, None),              # unset
    ({}, {"awx_job_id": 42}, AWX_REFUSAL),
    ({}, {"tower_job_id": "42"}, AWX_REFUSAL.replace("awx_job_id", "tower_job_id")),
    ({}, {"awx_job_id": 42, "tower_job_id": 42}, AWX_REFUSAL),          # AWX sets both: named once
    ({"rotate_store_dir_outlives_job": True}, {"awx_job_id": 42}, None),  # said on purpose
    ({"rotate_store_dir_outlives_job": "yes"}, {"awx_job_id": 42}, None),
    ({"rotate_store_dir_outlives_job": "false"}, {"awx_job_id": 42}, AWX_REFUSAL),
    ({"rotate_store_backend": "ssm"}, {"awx_job_id": 42}, None),
    ({"rotate_store_backend": "secretsmanager"}, {"awx_job_id": 42}, None),
])
def test_job_store_problem(changes, job_vars, expected):
    assert _preflight.job_store_problem(settings(**changes), job_vars) == expected


def test_an_awx_job_with_a_vault_file_store_is_refused_with_the_other_problems():
    hostvars = {"web1": {"rotate_consumers": [consumer()]}}
    found = _preflight.preflight_problems(settings(), ["web1"], hostvars, CONSUMERS_OPTION, [], "/root/r.json",
                                          lambda p: False, job_vars={"awx_job_id": 42})
    assert found == [AWX_REFUSAL]
    assert _preflight.preflight_problems(settings(), ["web1"], hostvars, CONSUMERS_OPTION, [], "/root/r.json",
                                         lambda p: False) == []


@pytest.mark.parametrize("name,expected", [
    ("/rekey/{user_name}", []),
    ("/prod/{user_name}/aws-key", []),
    ("/rekey/app", ['rotate_store_parameter_name "/rekey/app" does not contain {user_name}: expected one parameter '
                    'per user, such as /rekey/{user_name}']),
    ("rekey/{user_name}", ['rotate_store_parameter_name "rekey/{user_name}": parameter name \'rekey/user\' has levels '
                           'but does not start with /: expected /rekey/user']),
    ("/aws/{user_name}", ['rotate_store_parameter_name "/aws/{user_name}": parameter name \'/aws/user\' starts with '
                          'aws or ssm, which AWS reserves: choose another first level']),
])
def test_the_ssm_parameter_name_is_checked_before_any_write(name, expected):
    found = _preflight.settings_problems(settings(rotate_store_backend="ssm", rotate_store_parameter_name=name),
                                         ["web1"], [], "/root/r.json")
    assert found == expected
