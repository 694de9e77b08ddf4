"""rekey.aws.key_store and the rekey.aws.stored_key lookup, through real ansible-playbook runs.

The store is checked out of band: the Vault file is decrypted here with VaultLib, the secret is
read with the endpoint's admin client, never with the plugins under test.
"""
from __future__ import annotations

import datetime
import json
import secrets
import stat
import string
import sys

import pytest
from ansible.parsing.vault import VaultLib, VaultSecret

from tests.support.ansible_run import local_play, run_playbook

VAULT_PASSWORD = "correct horse battery staple"
NO_VAULT_MSG = ("backend vault_file needs a vault secret: run with --vault-password-file or --vault-id, "
                "or use backend secretsmanager or ssm")


def new_key():
    """A key id and secret shaped like IAM's (the vault_file backend never calls AWS)."""
    key_id = "AKIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _char in range(16))
    secret = "".join(secrets.choice(string.ascii_letters + string.digits + "+/") for _char in range(40))
    return key_id, secret


def create_iam_key(endpoint, user):
    key = endpoint.iam().create_access_key(UserName=user)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


@pytest.fixture
def vault_args(tmp_path):
    password_file = tmp_path / "vault-password"
    password_file.write_text(VAULT_PASSWORD + "\n")
    password_file.chmod(0o600)
    return ["--vault-password-file", str(password_file)]


def decrypt(path, password=VAULT_PASSWORD):
    vault = VaultLib([("default", VaultSecret(password.encode()))])
    return json.loads(vault.decrypt(path.read_bytes()))


def assert_secret_hidden(run, *secret_values):
    everything = run.stdout + run.stderr + json.dumps(run.results, default=str)
    for value in secret_values:
        assert value not in everything


def store_task(name, **args):
    return {"name": name, "rekey.aws.key_store": args, "register": "".join(c if c.isalnum() else "_" for c in name)}


# --- vault_file ---------------------------------------------------------------------------------

def test_vault_file_store_is_0600_vault_and_lookup_returns_it(tmp_path, vault_args):
    key_id, secret = new_key()
    path = tmp_path / "keys" / "app-a.vault"
    template = str(tmp_path / "keys" / "{user_name}.vault")
    stored = "lookup('rekey.aws.stored_key', 'app-a', path=store_path)"
    run = run_playbook(local_play([
        store_task("store", user_name="app-a", access_key_id="{{ key_id }}",
                   secret_access_key="{{ secret }}", path="{{ store_path }}"),
        store_task("store again", user_name="app-a", access_key_id="{{ key_id }}",
                   secret_access_key="{{ secret }}", path="{{ store_path }}"),
        {"name": "compare", "ansible.builtin.assert": {"that": [
            f"{stored}.user_name == 'app-a'",
            f"{stored}.access_key_id == key_id",
            f"{stored}.secret_access_key == secret",
            f"{stored}.keys() | sort == ['access_key_id', 'secret_access_key', 'user_name']",
        ]}},
    ], vars={"store_path": template}), extra_vars={"key_id": key_id, "secret": secret}, args=vault_args)

    assert run.rc == 0, run.stdout
    first, second = run.task("store")["result"], run.task("store again")["result"]
    assert first["changed"] is True and second["changed"] is False
    assert first["location"] == second["location"] == str(path)
    assert first["access_key_id"] == key_id
    assert run.task("compare")["status"] == "ok"

    raw = path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert raw.startswith(b"$ANSIBLE_VAULT;1.1;AES256\n")
    assert secret.encode() not in raw and key_id.encode() not in raw
    record = decrypt(path)
    assert {k: record[k] for k in ("user_name", "access_key_id", "secret_access_key")} == {
        "user_name": "app-a", "access_key_id": key_id, "secret_access_key": secret}
    stored_at = datetime.datetime.strptime(record["stored_at"], "%Y-%m-%dT%H:%M:%SZ")
    age = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - stored_at
    assert datetime.timedelta(0) <= age < datetime.timedelta(minutes=5)
    assert sorted(p.name for p in path.parent.iterdir()) == ["app-a.vault"]  # no temp file left
    assert_secret_hidden(run, secret)


def test_vault_file_without_vault_secret_fails_before_writing(tmp_path):
    key_id, secret = new_key()
    path = tmp_path / "not-yet" / "app.vault"
    run = run_playbook(local_play([
        store_task("store", user_name="app", access_key_id=key_id, secret_access_key="{{ secret }}",
                   path=str(path)),
    ]), extra_vars={"secret": secret})

    assert run.rc != 0
    result = run.task("store")
    assert result["status"] == "failed"
    assert result["result"]["msg"] == NO_VAULT_MSG
    assert not path.parent.exists()
    assert_secret_hidden(run, secret)


def test_vault_file_check_mode_writes_nothing(tmp_path, vault_args):
    key_id, secret = new_key()
    other_id, other_secret = new_key()
    path = tmp_path / "app.vault"
    play = local_play([store_task("store", user_name="app", access_key_id="{{ key_id }}",
                                  secret_access_key="{{ secret }}", path=str(path))])

    run = run_playbook(play, extra_vars={"key_id": key_id, "secret": secret}, check=True, diff=True,
                       args=vault_args)
    assert run.rc == 0, run.stdout
    result = run.task("store")["result"]
    assert result["changed"] is True
    assert result["diff"] == {"before": {"access_key_id": None}, "after": {"access_key_id": key_id}}
    assert not path.exists()

    assert run_playbook(play, extra_vars={"key_id": key_id, "secret": secret}, args=vault_args).rc == 0
    before = path.read_bytes()
    run = run_playbook(play, extra_vars={"key_id": other_id, "secret": other_secret}, check=True,
                       args=vault_args)
    assert run.rc == 0, run.stdout
    assert run.task("store")["result"]["changed"] is True
    assert path.read_bytes() == before
    assert decrypt(path)["access_key_id"] == key_id


def test_vault_file_new_key_replaces_old_and_mode_is_repaired(tmp_path, vault_args):
    old_id, old_secret = new_key()
    new_id, new_secret = new_key()
    path = tmp_path / "app.vault"
    play = local_play([store_task("store", user_name="app", access_key_id="{{ key_id }}",
                                  secret_access_key="{{ secret }}", path=str(path))])
    assert run_playbook(play, extra_vars={"key_id": old_id, "secret": old_secret}, args=vault_args).rc == 0

    path.chmod(0o644)
    run = run_playbook(play, extra_vars={"key_id": old_id, "secret": old_secret}, args=vault_args)
    assert run.task("store")["result"]["changed"] is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    run = run_playbook(play, extra_vars={"key_id": new_id, "secret": new_secret}, diff=True, args=vault_args)
    result = run.task("store")["result"]
    assert result["changed"] is True
    assert result["diff"] == {"before": {"access_key_id": old_id}, "after": {"access_key_id": new_id}}
    assert decrypt(path)["secret_access_key"] == new_secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_vault_file_refuses_what_it_cannot_read(tmp_path, vault_args):
    key_id, secret = new_key()
    plain = tmp_path / "plain.vault"
    plain.write_text("not a vault file\n")
    other_user = tmp_path / "other.vault"
    foreign = tmp_path / "foreign.vault"
    foreign_vault = VaultLib([("default", VaultSecret(b"another password"))])
    foreign.write_bytes(foreign_vault.encrypt(json.dumps({"user_name": "app"})))
    run = run_playbook(local_play([
        store_task("seed other user", user_name="someone-else", access_key_id=key_id,
                   secret_access_key="{{ secret }}", path=str(other_user)),
        {**store_task("plain file", user_name="app", access_key_id=key_id, secret_access_key="{{ secret }}",
                      path=str(plain)), "ignore_errors": True},
        {**store_task("other user's file", user_name="app", access_key_id=key_id,
                      secret_access_key="{{ secret }}", path=str(other_user)), "ignore_errors": True},
        {**store_task("other vault password", user_name="app", access_key_id=key_id,
                      secret_access_key="{{ secret }}", path=str(foreign)), "ignore_errors": True},
    ]), extra_vars={"secret": secret}, args=vault_args)

    assert run.rc == 0, run.stdout
    assert run.task("plain file")["result"]["msg"] == (
        f"{plain} exists and is not an Ansible Vault file: remove it or choose another path")
    assert run.task("other user's file")["result"]["msg"] == (
        f"{other_user} holds the key of IAM user 'someone-else', not 'app': give each user its own "
        "location (use {user_name} in it)")
    assert run.task("other vault password")["result"]["msg"] == (
        f"cannot decrypt {foreign} with this run's vault secrets: run with the vault secret it was "
        "written with, or remove it")
    assert plain.read_text() == "not a vault file\n"
    assert decrypt(other_user)["user_name"] == "someone-else"
    assert_secret_hidden(run, secret)


def test_vault_id_picks_the_secret_and_labels_the_file(tmp_path):
    key_id, secret = new_key()
    prod, dev = tmp_path / "prod-pass", tmp_path / "dev-pass"
    prod.write_text("prod password\n")
    dev.write_text("dev password\n")
    path = tmp_path / "app.vault"
    run = run_playbook(local_play([
        store_task("store", user_name="app", access_key_id=key_id, secret_access_key="{{ secret }}",
                   path=str(path), vault_id="dev"),
        {**store_task("unknown id", user_name="app", access_key_id=key_id, secret_access_key="{{ secret }}",
                      path=str(tmp_path / "x.vault"), vault_id="stage"), "ignore_errors": True},
        {"name": "read back", "ansible.builtin.assert": {"that": [
            f"lookup('rekey.aws.stored_key', 'app', path='{path}').secret_access_key == secret"]}},
    ]), extra_vars={"secret": secret},
        args=["--vault-id", f"prod@{prod}", "--vault-id", f"dev@{dev}"])

    assert run.rc == 0, run.stdout
    assert path.read_bytes().startswith(b"$ANSIBLE_VAULT;1.2;AES256;dev\n")
    assert decrypt(path, "dev password")["access_key_id"] == key_id
    assert run.task("unknown id")["result"]["msg"] == "vault_id 'stage' is not one of this run's vault ids: dev, prod"
    assert not (tmp_path / "x.vault").exists()


def test_vault_file_absent(tmp_path, vault_args):
    key_id, secret = new_key()
    other_id, dummy = new_key()
    path = tmp_path / "app.vault"
    run = run_playbook(local_play([
        store_task("store", user_name="app", access_key_id=key_id, secret_access_key="{{ secret }}",
                   path=str(path)),
        store_task("absent other key", user_name="app", access_key_id=other_id, state="absent", path=str(path)),
        {"name": "still there", "ansible.builtin.stat": {"path": str(path)}, "register": "still"},
        {**store_task("absent check", user_name="app", access_key_id=key_id, state="absent", path=str(path)),
         "check_mode": True},
        store_task("absent", user_name="app", access_key_id=key_id, state="absent", path=str(path)),
        store_task("absent again", user_name="app", state="absent", path=str(path)),
    ]), extra_vars={"secret": secret}, args=vault_args)

    assert run.rc == 0, run.stdout
    other = run.task("absent other key")["result"]
    assert other["changed"] is False and other["access_key_id"] == key_id
    assert run.task("still there")["result"]["stat"]["exists"] is True
    assert run.task("absent check")["result"]["changed"] is True
    removed = run.task("absent")["result"]
    assert removed["changed"] is True and removed["location"] == str(path) and removed["access_key_id"] == key_id
    again = run.task("absent again")["result"]
    assert again["changed"] is False and again["location"] is None
    assert not path.exists()


def test_bad_input_is_named(tmp_path, vault_args):
    key_id, secret = new_key()
    run = run_playbook(local_play([
        {**store_task("bad key id", user_name="app", access_key_id="akia-lower", secret_access_key="{{ secret }}",
                      path=str(tmp_path / "a.vault")), "ignore_errors": True},
        {**store_task("bad user", user_name="../etc", access_key_id=key_id, secret_access_key="{{ secret }}",
                      path=str(tmp_path / "{user_name}.vault")), "ignore_errors": True},
        {**store_task("no path", user_name="app", access_key_id=key_id, secret_access_key="{{ secret }}"),
         "ignore_errors": True},
        {**store_task("no secret", user_name="app", access_key_id=key_id, path=str(tmp_path / "a.vault")),
         "ignore_errors": True},
    ]), extra_vars={"secret": secret}, args=vault_args)

    assert run.rc == 0, run.stdout
    assert run.task("bad key id")["result"]["msg"] == (
        "access_key_id 'akia-lower' is not an access key id: expected 16-128 upper-case letters and digits")
    assert run.task("bad user")["result"]["msg"] == (
        "user name '../etc' is not an IAM user name: expected 1 to 64 letters, digits or +=,.@_-")
    assert "backend is vault_file but all of the following are missing: path" in run.task("no path")["result"]["msg"]
    assert "secret_access_key" in run.task("no secret")["result"]["msg"]
    assert list(tmp_path.iterdir()) == [tmp_path / "vault-password"]
    assert_secret_hidden(run, secret)


def test_lookup_several_users_and_its_errors(tmp_path, vault_args):
    keys = {user: new_key() for user in ("app-a", "app-b")}
    template = str(tmp_path / "{user_name}.vault")
    tasks = [store_task(f"store {user}", user_name=user, access_key_id=key_id, secret_access_key=f"{{{{ secret_{i} }}}}",
                        path=template)
             for i, (user, (key_id, dummy)) in enumerate(keys.items())]
    both = f"query('rekey.aws.stored_key', 'app-a', 'app-b', path='{template}')"
    tasks += [
        {"name": "both", "ansible.builtin.assert": {"that": [
            f"{both} | map(attribute='user_name') == ['app-a', 'app-b']",
            f"{both} | map(attribute='access_key_id') == ['{keys['app-a'][0]}', '{keys['app-b'][0]}']",
            f"{both} | map(attribute='secret_access_key') == [secret_0, secret_1]",
        ]}},
        {"name": "missing", "ansible.builtin.debug": {
            "msg": f"{{{{ lookup('rekey.aws.stored_key', 'app-c', path='{template}') }}}}"}, "ignore_errors": True},
        {"name": "fixed path", "ansible.builtin.debug": {
            "msg": f"{{{{ query('rekey.aws.stored_key', 'app-a', 'app-b', path='{tmp_path}/app-a.vault') }}}}"},
         "ignore_errors": True},
        {"name": "wrong user", "ansible.builtin.debug": {
            "msg": f"{{{{ lookup('rekey.aws.stored_key', 'app-b', path='{tmp_path}/app-a.vault') }}}}"},
         "ignore_errors": True},
    ]
    run = run_playbook(local_play(tasks), args=vault_args,
                       extra_vars={"secret_0": keys["app-a"][1], "secret_1": keys["app-b"][1]})

    assert run.rc == 0, run.stdout
    assert run.task("both")["status"] == "ok"
    assert f"no stored key for IAM user 'app-c': {tmp_path}/app-c.vault does not exist" in (
        run.task("missing")["result"]["msg"])
    assert f"path '{tmp_path}/app-a.vault' must contain {{user_name}} to look up several users (app-a, app-b)" in (
        run.task("fixed path")["result"]["msg"])
    assert f"{tmp_path}/app-a.vault holds the key of IAM user 'app-a', not 'app-b'" in (
        run.task("wrong user")["result"]["msg"])
    assert_secret_hidden(run, keys["app-a"][1], keys["app-b"][1])


def test_lookup_without_vault_secret_names_user_and_file(tmp_path, vault_args):
    key_id, secret = new_key()
    path = tmp_path / "app.vault"
    play = local_play([store_task("store", user_name="app", access_key_id=key_id, secret_access_key="{{ secret }}",
                                  path=str(path))])
    assert run_playbook(play, extra_vars={"secret": secret}, args=vault_args).rc == 0
    run = run_playbook(local_play([
        {"name": "read", "ansible.builtin.debug": {
            "msg": f"{{{{ lookup('rekey.aws.stored_key', 'app', path='{path}') }}}}"}}]))
    assert run.rc != 0
    assert (f"the stored key of IAM user 'app' is in {path}, encrypted with Ansible Vault: run with "
            "--vault-password-file or --vault-id") in run.task("read")["result"]["msg"]
    assert_secret_hidden(run, secret)


# --- secretsmanager -----------------------------------------------------------------------------

def sm_play(endpoint, tasks, **vars):
    conn = endpoint.connection_args()
    return local_play(tasks, vars={"conn": conn, **vars},
                      module_defaults={"rekey.aws.key_store": {**conn, "backend": "secretsmanager"}})


SM_LOOKUP = ("lookup('rekey.aws.stored_key', user, backend='secretsmanager', endpoint_url=conn.endpoint_url, "
             "access_key=conn.access_key, secret_key=conn.secret_key, region=conn.region)")


def test_secretsmanager_store_lookup_absent(endpoint):
    user = endpoint.new_user("ks")
    key_id, secret = create_iam_key(endpoint, user)
    name = f"rekey/{user}"
    run = run_playbook(sm_play(endpoint, [
        store_task("store", user_name="{{ user }}", access_key_id="{{ key_id }}", secret_access_key="{{ secret }}"),
        store_task("store again", user_name="{{ user }}", access_key_id="{{ key_id }}",
                   secret_access_key="{{ secret }}"),
        {"name": "compare", "ansible.builtin.assert": {"that": [
            f"{SM_LOOKUP}.access_key_id == key_id", f"{SM_LOOKUP}.secret_access_key == secret"]}},
    ], user=user), extra_vars={"key_id": key_id, "secret": secret})

    assert run.rc == 0, run.stdout
    first, second = run.task("store")["result"], run.task("store again")["result"]
    assert first["changed"] is True and second["changed"] is False
    sm = endpoint.secretsmanager()
    described = sm.describe_secret(SecretId=name)
    assert first["location"] == second["location"] == described["ARN"]
    record = json.loads(sm.get_secret_value(SecretId=name)["SecretString"])
    assert (record["user_name"], record["access_key_id"], record["secret_access_key"]) == (user, key_id, secret)
    assert_secret_hidden(run, secret)

    endpoint.reset_counts()
    run = run_playbook(sm_play(endpoint, [
        store_task("absent other", user_name="{{ user }}", access_key_id="AKIAOTHEROTHEROTHER0", state="absent"),
        store_task("absent", user_name="{{ user }}", state="absent"),
        store_task("absent again", user_name="{{ user }}", state="absent"),
        {"name": "gone", "ansible.builtin.debug": {"msg": f"{{{{ {SM_LOOKUP} }}}}"}, "ignore_errors": True},
    ], user=user))
    assert run.rc == 0, run.stdout
    assert run.task("absent other")["result"]["changed"] is False
    removed = run.task("absent")["result"]
    assert removed["changed"] is True and removed["access_key_id"] == key_id
    assert removed["location"] == described["ARN"]
    assert run.task("absent again")["result"]["changed"] is False
    assert f"cannot read the stored key of IAM user '{user}'" in run.task("gone")["result"]["msg"]
    assert endpoint.counts().get("secretsmanager:DeleteSecret") == 1
    deleted = sm.describe_secret(SecretId=name)["DeletedDate"]
    window = deleted - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(days=6, hours=23) < window <= datetime.timedelta(days=7)  # not the 30 day default

    # A new key after a removal restores the secret and replaces the value.
    new_id, new_secret = create_iam_key(endpoint, user)
    run = run_playbook(sm_play(endpoint, [
        store_task("store new", user_name="{{ user }}", access_key_id="{{ key_id }}", secret_access_key="{{ secret }}"),
    ], user=user), extra_vars={"key_id": new_id, "secret": new_secret})
    assert run.rc == 0, run.stdout
    assert run.task("store new")["result"]["changed"] is True
    assert "DeletedDate" not in sm.describe_secret(SecretId=name)
    assert json.loads(sm.get_secret_value(SecretId=name)["SecretString"])["secret_access_key"] == new_secret
    assert_secret_hidden(run, secret, new_secret)


def test_secretsmanager_name_template_kms_key_and_no_write_when_unchanged(endpoint):
    user = endpoint.new_user("ks")
    key_id, secret = create_iam_key(endpoint, user)
    play = sm_play(endpoint, [store_task("store", user_name="{{ user }}", access_key_id="{{ key_id }}",
                                         secret_access_key="{{ secret }}", secret_name="apps/{user_name}/iam",
                                         kms_key_id="alias/rekey-test")],
                   user=user)
    assert run_playbook(play, extra_vars={"key_id": key_id, "secret": secret}).rc == 0
    endpoint.reset_counts()
    run = run_playbook(play, extra_vars={"key_id": key_id, "secret": secret})
    assert run.rc == 0, run.stdout
    assert run.task("store")["result"]["changed"] is False
    counts = endpoint.counts()
    assert set(counts) == {"secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"}, counts
    described = endpoint.secretsmanager().describe_secret(SecretId=f"apps/{user}/iam")
    assert described["ARN"] == run.task("store")["result"]["location"]
    assert described["KmsKeyId"] == "alias/rekey-test"


def test_secretsmanager_check_mode_writes_nothing(endpoint):
    user = endpoint.new_user("ks")
    key_id, secret = create_iam_key(endpoint, user)
    run = run_playbook(sm_play(endpoint, [
        store_task("store", user_name="{{ user }}", access_key_id="{{ key_id }}", secret_access_key="{{ secret }}"),
    ], user=user), extra_vars={"key_id": key_id, "secret": secret}, check=True)
    assert run.rc == 0, run.stdout
    result = run.task("store")["result"]
    assert result["changed"] is True and result["location"] is None
    assert not [action for action in endpoint.counts() if action not in (
        "secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue")]
    with pytest.raises(endpoint.secretsmanager().exceptions.ResourceNotFoundException):
        endpoint.secretsmanager().describe_secret(SecretId=f"rekey/{user}")


def test_secret_never_in_output_at_high_verbosity(endpoint, tmp_path, vault_args):
    """No task here has no_log: the plugins alone keep the secret out of the output."""
    user = endpoint.new_user("ks")
    key_id, secret = create_iam_key(endpoint, user)
    path = tmp_path / "{user_name}.vault"
    run = run_playbook(sm_play(endpoint, [
        store_task("sm store", user_name="{{ user }}", access_key_id="{{ key_id }}",
                   secret_access_key="{{ secret }}"),
        store_task("file store", user_name="{{ user }}", access_key_id="{{ key_id }}",
                   secret_access_key="{{ secret }}", backend="vault_file", path=str(path)),
        {"name": "compare", "ansible.builtin.assert": {"that": [
            f"{SM_LOOKUP}.secret_access_key == secret",
            f"lookup('rekey.aws.stored_key', user, path='{path}').secret_access_key == secret"]}},
        store_task("sm absent", user_name="{{ user }}", state="absent"),
        store_task("file absent", user_name="{{ user }}", state="absent", backend="vault_file", path=str(path)),
    ], user=user), extra_vars={"key_id": key_id, "secret": secret}, diff=True, args=vault_args + ["-vvvv"])

    assert run.rc == 0, run.stdout
    assert [r["changed"] for r in run.results] == [True, True, False, True, True]
    assert key_id in run.stdout  # the output is really there, and verbose
    assert_secret_hidden(run, secret)


# --- _secretsmanager error mapping, over real HTTP ----------------------------------------------

def test_secretsmanager_errors_are_mapped(endpoint):
    import boto3
    from botocore.config import Config

    from tests.support.ansible_run import collections_path
    sys.path.insert(0, collections_path())
    from ansible_collections.rekey.aws.plugins.module_utils import _secretsmanager as sm

    admin = endpoint.secretsmanager()
    user = endpoint.new_user("ks")
    assert sm.describe_secret(admin, f"rekey/{user}") is None
    assert sm.get_secret_string(admin, f"rekey/{user}") is None
    with pytest.raises(sm.KeyStoreError, match=rf"^no stored key for IAM user '{user}': secret 'rekey/{user}' "
                                               r"does not exist$"):
        sm.read_record(admin, f"rekey/{user}", user)

    admin.create_secret(Name=f"rekey/{user}", SecretString="{}")
    admin.delete_secret(SecretId=f"rekey/{user}", RecoveryWindowInDays=7)
    with pytest.raises(sm.KeyStoreError) as caught:
        sm.get_secret_string(admin, f"rekey/{user}")
    assert str(caught.value).startswith(f"secretsmanager:GetSecretValue on 'rekey/{user}' failed: "
                                        "InvalidRequestException: ")
    assert "  " not in str(caught.value) and "\n" not in str(caught.value)

    key_id, secret = create_iam_key(endpoint, user)  # a key with no policy at all
    with pytest.raises(sm.KeyStoreError, match=rf"^secretsmanager:DescribeSecret on 'rekey/{user}' failed: "
                                               r"AccessDeniedException: .*\(the caller needs "
                                               r"secretsmanager:DescribeSecret on this secret\)$"):
        sm.describe_secret(endpoint.secretsmanager(key_id, secret), f"rekey/{user}")

    unreachable = boto3.client("secretsmanager", endpoint_url="http://127.0.0.1:9", region_name="us-east-1",
                               aws_access_key_id="AKIAUNREACHABLE00000", aws_secret_access_key="x",
                               config=Config(retries={"total_max_attempts": 1}))
    with pytest.raises(sm.KeyStoreError, match=r"^secretsmanager:DescribeSecret on 'rekey/app' failed: Could not "
                                               r"connect to the endpoint URL"):
        sm.describe_secret(unreachable, "rekey/app")


# --- ssm (Parameter Store SecureString) ------------------------------------------------------------

def ssm_play(endpoint, tasks, **vars):
    conn = endpoint.connection_args()
    return local_play(tasks, vars={"conn": conn, **vars},
                      module_defaults={"rekey.aws.key_store": {**conn, "backend": "ssm"}})


SSM_LOOKUP = ("lookup('rekey.aws.stored_key', user, backend='ssm', endpoint_url=conn.endpoint_url, "
              "access_key=conn.access_key, secret_key=conn.secret_key, region=conn.region)")


def ssm_record(endpoint, name):
    """The parameter as stored, read with the admin client: (type, record)."""
    parameter = endpoint.client("ssm").get_parameter(Name=name, WithDecryption=True)["Parameter"]
    return parameter["Type"], json.loads(parameter["Value"])


def ssm_writes(endpoint):
    return {a: n for a, n in endpoint.counts().items() if a in ("ssm:PutParameter", "ssm:DeleteParameter")}


def test_ssm_store_in_the_rhythm_then_lookup_and_absent(endpoint):
    """check mode -> apply -> check-mode idempotence -> idempotence, the parameter read out of band."""
    user = endpoint.new_user("ks")
    key_id, secret = create_iam_key(endpoint, user)
    name = f"/rekey/{user}"
    store = [store_task("store", user_name="{{ user }}", access_key_id="{{ key_id }}",
                        secret_access_key="{{ secret }}", kms_key_id="alias/rekey-test")]
    ssm = endpoint.client("ssm")
    secrets_ = {"key_id": key_id, "secret": secret}

    endpoint.reset_counts()
    run = run_playbook(ssm_play(endpoint, store, user=user), extra_vars=secrets_, check=True, diff=True)
    assert run.rc == 0, run.stdout
    result = run.task("store")["result"]
    assert result["changed"] is True and result["location"] is None
    assert result["diff"] == {"before": {"access_key_id": None}, "after": {"access_key_id": key_id}}
    assert ssm_writes(endpoint) == {}
    with pytest.raises(ssm.exceptions.ParameterNotFound):
        ssm.get_parameter(Name=name)

    run = run_playbook(ssm_play(endpoint, store, user=user), extra_vars=secrets_)
    assert run.rc == 0, run.stdout
    result = run.task("store")["result"]
    assert (result["changed"], result["location"], result["access_key_id"]) == (True, name, key_id)
    kind, record = ssm_record(endpoint, name)
    assert kind == "SecureString"
    assert (record["user_name"], record["access_key_id"], record["secret_access_key"]) == (user, key_id, secret)
    described = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [name]}])["Parameters"][0]
    assert described["KeyId"] == "alias/rekey-test"

    for check in (True, False):
        endpoint.reset_counts()
        run = run_playbook(ssm_play(endpoint, store, user=user), extra_vars=secrets_, check=check)
        assert run.rc == 0, run.stdout
        assert run.task("store")["result"]["changed"] is False
        assert endpoint.counts() == {"ssm:GetParameter": 1}, endpoint.counts()
    assert_secret_hidden(run, secret)

    endpoint.reset_counts()
    run = run_playbook(ssm_play(endpoint, [
        {"name": "compare", "ansible.builtin.assert": {"that": [
            f"{SSM_LOOKUP}.access_key_id == key_id", f"{SSM_LOOKUP}.secret_access_key == secret"]}},
        store_task("absent other", user_name="{{ user }}", access_key_id="AKIAOTHEROTHEROTHER0", state="absent"),
        store_task("absent check", user_name="{{ user }}", access_key_id="{{ key_id }}", state="absent"),
    ], user=user), extra_vars=secrets_, check=True)
    assert run.rc == 0, run.stdout
    assert run.task("absent other")["result"]["changed"] is False
    assert run.task("absent check")["result"]["changed"] is True
    assert ssm_writes(endpoint) == {}
    assert ssm_record(endpoint, name)[1]["access_key_id"] == key_id

    run = run_playbook(ssm_play(endpoint, [
        store_task("absent other", user_name="{{ user }}", access_key_id="AKIAOTHEROTHEROTHER0", state="absent"),
        store_task("absent", user_name="{{ user }}", access_key_id="{{ key_id }}", state="absent"),
        store_task("absent again", user_name="{{ user }}", state="absent"),
        {"name": "gone", "ansible.builtin.debug": {"msg": f"{{{{ {SSM_LOOKUP} }}}}"}, "ignore_errors": True},
    ], user=user), extra_vars=secrets_)
    assert run.rc == 0, run.stdout
    assert run.task("absent other")["result"]["changed"] is False
    removed = run.task("absent")["result"]
    assert (removed["changed"], removed["location"], removed["access_key_id"]) == (True, name, key_id)
    assert run.task("absent again")["result"]["changed"] is False
    assert (f"no stored key for IAM user '{user}': parameter '{name}' does not exist"
            in run.task("gone")["result"]["msg"])
    assert ssm_writes(endpoint) == {"ssm:DeleteParameter": 1}
    with pytest.raises(ssm.exceptions.ParameterNotFound):
        ssm.get_parameter(Name=name)
    assert_secret_hidden(run, secret)


def test_ssm_refuses_what_is_not_its_record_and_bad_names(endpoint):
    user = endpoint.new_user("ks")
    key_id, secret = create_iam_key(endpoint, user)
    ssm = endpoint.client("ssm")
    ssm.put_parameter(Name=f"/rekey/{user}", Value="not a record", Type="SecureString")
    ssm.put_parameter(Name=f"/apps/{user}", Type="String", Value=json.dumps(
        {"user_name": "someone-else", "access_key_id": "AKIAOTHEROTHEROTHER0", "secret_access_key": "x"}))
    endpoint.reset_counts()
    run = run_playbook(ssm_play(endpoint, [
        {**store_task("foreign", user_name="{{ user }}", access_key_id="{{ key_id }}",
                      secret_access_key="{{ secret }}"), "ignore_errors": True},
        {**store_task("other user", user_name="{{ user }}", access_key_id="{{ key_id }}",
                      secret_access_key="{{ secret }}", parameter_name="/apps/{user_name}"), "ignore_errors": True},
        {**store_task("bad name", user_name="{{ user }}", access_key_id="{{ key_id }}",
                      secret_access_key="{{ secret }}", parameter_name="/aws/{user_name}"), "ignore_errors": True},
    ], user=user), extra_vars={"key_id": key_id, "secret": secret})
    assert run.rc == 0, run.stdout
    assert run.task("foreign")["result"]["msg"] == (
        f"parameter '/rekey/{user}' does not hold a rekey.aws key record (not JSON)")
    assert run.task("other user")["result"]["msg"] == (
        f"parameter '/apps/{user}' holds the key of IAM user 'someone-else', not '{user}': give each user its own "
        "location (use {user_name} in it)")
    assert "starts with aws or ssm, which AWS reserves" in run.task("bad name")["result"]["msg"]
    assert ssm_writes(endpoint) == {}
    assert ssm.get_parameter(Name=f"/rekey/{user}", WithDecryption=True)["Parameter"]["Value"] == "not a record"
    assert_secret_hidden(run, secret)
