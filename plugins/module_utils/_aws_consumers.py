# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# Internal to rekey.aws: not a public API, may change without notice.
"""The consumers whose key is held in AWS (formats ssm_parameter and secretsmanager_secret).

Each parameter or secret is written once per run from the controller, whatever the number of
hosts naming it, and put back on rollback from AWS's own history: the parameter's version
before the one holding the new key, the secret's AWSPREVIOUS. So a rollback, or a resumed run
after a crash, needs nothing the controller kept. The value is one JSON object with the two
configured fields. The calls go through _ssm and _secretsmanager (one place per service); the
decisions (targets, keep / write / restore) are pure functions. No result or message ever
holds a secret: a value is only ever read for the key id in it.
"""

import json

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.rekey.aws.plugins.module_utils import _connection
from ansible_collections.rekey.aws.plugins.module_utils import _consumers
from ansible_collections.rekey.aws.plugins.module_utils import _secretsmanager as sm
from ansible_collections.rekey.aws.plugins.module_utils import _ssm

SSM, SECRET = "ssm_parameter", "secretsmanager_secret"


class AwsConsumerError(Exception):
    """A parameter or secret could not be read, written or put back; the message names it, never a value."""


# --- pure -------------------------------------------------------------------------------------

def targets(consumers):
    """Each parameter or secret these consumers (plan entries with their user's keys) name, once,
    in order of first appearance: format, name, iam_user, the two fields, kms_key_id, the key ids
    of the user and the hosts and consumers naming it."""
    out = {}
    for c in consumers:
        if not _consumers.held_in_aws(c):
            continue
        key = _consumers.aws_target(c)
        if key not in out:
            out[key] = {"format": key[0], "name": key[1], "iam_user": c["iam_user"],
                        "id_field": c.get("access_key_id_field") or "aws_access_key_id",
                        "secret_field": c.get("secret_access_key_field") or "aws_secret_access_key",
                        "kms_key_id": c.get("kms_key_id") or "", "old_key_id": c.get("old_key_id"),
                        "new_key_id": c.get("new_key_id"), "hosts": [], "consumers": []}
        t = out[key]
        if c.get("host") and c["host"] not in t["hosts"]:
            t["hosts"].append(c["host"])
        t["consumers"].append("%s %s" % (c.get("host", "?"), c["name"]))
    return list(out.values())


def describe(target):
    kind = "parameter" if target["format"] == SSM else "secret"
    return "%s %s (IAM user %s)" % (kind, target["name"], target["iam_user"])


def value_text(target, access_key_id, secret_access_key):
    """The value written: one JSON object holding the key id and secret in the configured fields."""
    return json.dumps({target["id_field"]: access_key_id, target["secret_field"]: secret_access_key}, sort_keys=True)


def held_key_id(target, text):
    """The key id a value holds (its id field), or None when it is no JSON object with one. The
    value is parsed here and dropped; nothing of it but the key id leaves."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    held = value.get(target["id_field"]) if isinstance(value, dict) else None
    return held if isinstance(held, str) and held else None


def write_decision(target, exists, held_id, new_key_id):
    """(action, problem): keep when it holds the new key already (a resumed run), write otherwise.
    A parameter or secret that does not exist is a problem: the app reads it, so it must hold the
    key in use before the rotation."""
    if not exists:
        return "none", ("%s does not exist: create it holding the key the app uses now (JSON with fields %s and %s), "
                        "then run again" % (describe(target), target["id_field"], target["secret_field"]))
    if new_key_id and held_id == new_key_id:
        return "keep", None
    return "write", None


def restore_decision(target, held_now, previous_exists, held_before, old_key_id, new_key_id):
    """(action, problem) after a failed rollout: restore when it holds the new key and the value
    before it holds the old one; keep when it does not hold the new key (nothing of this run to
    undo)."""
    if not new_key_id or held_now != new_key_id:
        return "keep", None
    if not previous_exists:
        return "none", ("%s holds the new key %s but has no earlier value to put back: the new key stays Active"
                        % (describe(target), new_key_id))
    if held_before != old_key_id:
        facts = (describe(target), new_key_id, held_before or "none", old_key_id)
        return "none", ("%s holds the new key %s, and the value before it holds key %s, not the old key %s: not put "
                        "back, the new key stays Active" % facts)
    return "restore", None


def result(target, action, before, after, problem=None):
    """What a task returns about one target: never a value."""
    return {"format": target["format"], "name": target["name"], "iam_user": target["iam_user"],
            "hosts": target["hosts"], "action": action, "changed": action in ("write", "restore"),
            "key_before": before, "key_after": after, "problem": problem}


def unrestored_users(results):
    """The users of targets a rollback could not put back: their new key may be read from there."""
    out = []
    for r in results:
        if r.get("problem") and r["iam_user"] not in out:
            out.append(r["iam_user"])
    return out


def failed_hosts(results):
    """{host: [problems]} of the targets a write could not make hold the new key."""
    out = {}
    for r in results:
        if r.get("problem"):
            for h in r["hosts"]:
                out.setdefault(h, []).append("%s: %s" % (h, r["problem"]))
    return out


def diff(results):
    """Ansible's --diff of the targets: the key id each holds, before and after; never a secret."""
    return [{"before_header": "%s %s" % (r["format"], r["name"]), "after_header": "%s %s" % (r["format"], r["name"]),
             "before": "access_key_id: %s\n" % (r["key_before"] or "none"),
             "after": "access_key_id: %s\n" % (r["key_after"] or "none")} for r in results]


# --- calls ------------------------------------------------------------------------------------

def connection_params(raw):
    """The connection options (rotate_aws) with their defaults, aliases and environment fallbacks,
    as a module would see them; raises AwsConsumerError naming a bad one."""
    validated = ArgumentSpecValidator(_connection.connection_argspec()).validate(dict(raw or {}))
    if validated.error_messages:
        raise AwsConsumerError("rotate_aws: %s" % "; ".join(validated.error_messages))
    return validated.validated_parameters


class Clients:
    """The ssm and secretsmanager clients of the admin credentials, each made when first needed."""

    def __init__(self, params):
        self._params = params
        self._made = {}

    def __call__(self, service):
        if service not in self._made:
            if not _connection.HAS_BOTO3:
                raise AwsConsumerError("consumers held in AWS need boto3 and botocore in the controller's Python")
            problem = _connection.connection_problem(self._params)
            if problem:
                raise AwsConsumerError(problem)
            self._made[service] = _connection.client(_connection.admin_session(self._params), service, self._params,
                                                     self._params.get("retries", 10))
        return self._made[service]


def _current(clients, target):
    """(exists, value, version): the value held now."""
    if target["format"] == SSM:
        found = _ssm.get_parameter(clients("ssm"), target["name"])
        return (found is not None, found and found["value"], found and found["version"])
    found = sm.get_secret_version(clients("secretsmanager"), target["name"], "AWSCURRENT")
    return (found is not None, found and found["value"], found and found["version_id"])


def _previous(clients, target, version):
    """The value before the current one, or None: the parameter's previous version, the secret's
    AWSPREVIOUS."""
    if target["format"] == SSM:
        found = _ssm.get_parameter_version(clients("ssm"), target["name"], version - 1) if version > 1 else None
    else:
        found = sm.get_secret_version(clients("secretsmanager"), target["name"], "AWSPREVIOUS")
    return found and found["value"]


def _put(clients, target, text):
    if target["format"] == SSM:
        _ssm.put_secure_string(clients("ssm"), target["name"], text, kms_key_id=target["kms_key_id"] or None)
    else:
        sm.put_secret_string(clients("secretsmanager"), target["name"], text)


def _guarded(target, step):
    try:
        return step()
    except (_ssm.SsmError, sm.KeyStoreError, AwsConsumerError) as exc:
        return result(target, "none", None, None, "%s: %s" % (describe(target), exc))


def write(clients, target, keys, check_mode):
    """Make the target hold the new key of its user (keys: {user: {access_key_id,
    secret_access_key}}; in check mode only the key ids are needed): one read, and one write when
    it holds another key."""
    def step():
        exists, text, _version = _current(clients, target)
        held = held_key_id(target, text)
        del text
        new_id = target["new_key_id"]
        action, problem = write_decision(target, exists, held, new_id)
        if action == "write" and not check_mode:
            key = keys[target["iam_user"]]
            _put(clients, target, value_text(target, key["access_key_id"], key["secret_access_key"]))
        return result(target, action, held, new_id if action in ("write", "keep") else held, problem)
    return _guarded(target, step)


def restore(clients, target, check_mode):
    """Put back the value from before the new key when the target holds the new key: one read
    when it does not, three calls when it does."""
    def step():
        exists, text, version = _current(clients, target)
        held = held_key_id(target, text)
        del text
        before_text = _previous(clients, target, version) if exists and held == target["new_key_id"] else None
        before = held_key_id(target, before_text)
        action, problem = restore_decision(target, held, before_text is not None, before, target["old_key_id"],
                                           target["new_key_id"])
        if action == "restore" and not check_mode:
            _put(clients, target, before_text)
        del before_text
        return result(target, action, held, before if action == "restore" else held, problem)
    return _guarded(target, step)
