# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# Internal to rekey.aws: not a public API, may change without notice.
"""The IAM permissions a rotation needs (docs/iam-policy.json), and a check, run before the
rotation's first write, that the caller holds the ones that can be checked without changing
anything.

What "refused before any write" can honestly mean. IAM has no dry run, and asking it what a
principal may do (iam:SimulatePrincipalPolicy) needs a permission of its own and ignores
organization SCPs. So each write is judged by how IAM answers a call that cannot change state:
IAM authorizes a request before it looks the resource up, so

- iam:UpdateAccessKey and iam:DeleteAccessKey on an access key id that IAM can never issue (key
  ids are base32: "0" is not a digit of theirs) answer NoSuchEntity when the caller may call
  them, AccessDenied when not, and change nothing either way;
- iam:UntagUser of a tag key rekey.aws never sets succeeds and changes nothing (IAM ignores tag
  keys the user does not have), or answers AccessDenied;
- iam:ListAccessKeys, iam:GetAccessKeyLastUsed and iam:ListUserTags are reads: the plan makes them
  before the first write anyway;
- iam:TagUser is the rotation's first write (the lock): denied, it writes nothing;
- iam:CreateAccessKey cannot be checked without creating a key. It comes right after the lock:
  denied, no key was created and the lock is released (iam:UntagUser, checked here).

Every probe is made on each user the run will lock, with that user's name, so a policy whose
Resource names those users (or their path) is judged on the users themselves. The probes use
only actions the rotation needs anyway: the policy needs nothing more for them.

Secrets Manager and Parameter Store (rotate_store_backend secretsmanager, ssm) are not probed: its writes come after the
key was created, and the rotation deletes a key it could not store.
"""

try:
    import botocore.exceptions
except ImportError:
    pass  # the callers check _connection.HAS_BOTO3 before calling check()

from ansible_collections.rekey.aws.plugins.module_utils._iam import IamError, map_error

# Never issued: IAM access key ids are AKIA + 16 base32 characters (A-Z, 2-7).
IMPOSSIBLE_KEY_ID = "AKIA0000000000000000"
# Never set by rekey.aws (its tags are rekey:lock:*, rekey:rotation:*).
PROBE_TAG_KEY = "rekey:permission-probe"

ROTATE_ACTIONS = (
    "iam:ListAccessKeys",
    "iam:GetAccessKeyLastUsed",
    "iam:CreateAccessKey",
    "iam:UpdateAccessKey",
    "iam:DeleteAccessKey",
    "iam:ListUserTags",
    "iam:TagUser",
    "iam:UntagUser",
)
# The audit of every user (audit_all_users=true, access_key_info all_users).
AUDIT_ALL_USERS_ACTIONS = ("iam:ListUsers",)
SECRETSMANAGER_ACTIONS = (
    "secretsmanager:DescribeSecret",
    "secretsmanager:GetSecretValue",
    "secretsmanager:CreateSecret",
    "secretsmanager:PutSecretValue",
    "secretsmanager:RestoreSecret",
    "secretsmanager:DeleteSecret",
)
# The ssm key store, on the parameters under /rekey/ (docs/iam-policy.json, statement RekeySsmKeyStore).
SSM_STORE_ACTIONS = (
    "ssm:GetParameter",
    "ssm:PutParameter",
    "ssm:DeleteParameter",
)
STORE_ACTIONS = {"vault_file": (), "secretsmanager": SECRETSMANAGER_ACTIONS, "ssm": SSM_STORE_ACTIONS}
# The consumers held in AWS (formats ssm_parameter, secretsmanager_secret): read, write, put back.
AWS_CONSUMER_ACTIONS = (
    "ssm:GetParameter",
    "ssm:PutParameter",
    "secretsmanager:GetSecretValue",
    "secretsmanager:PutSecretValue",
)

DENIED_CODES = frozenset(("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"))

# (action, boto3 method, request parameters besides UserName, answers that mean "may call it")
# None stands for success.
PROBES = (
    ("iam:UpdateAccessKey", "update_access_key", {"AccessKeyId": IMPOSSIBLE_KEY_ID, "Status": "Inactive"},
     ("NoSuchEntity",)),
    ("iam:DeleteAccessKey", "delete_access_key", {"AccessKeyId": IMPOSSIBLE_KEY_ID}, ("NoSuchEntity",)),
    ("iam:UntagUser", "untag_user", {"TagKeys": [PROBE_TAG_KEY]}, (None,)),
)
# What the rotation probes before its lock (rotation_lock check_permissions). Every probe is an
# IAM call of the rotation's budget of 12 per user (issue 10), which the rotation itself already
# fills with 10: so only the two writes whose denial would leave a key half-retired, or an unused
# new key Active, are probed. iam:UntagUser is not: it only releases the lock and clears the state,
# after the keys are settled; denied, the run fails at its very end with every key and host in
# order, the lock expires by itself (rotate_lock_ttl_s), and the report names the action.
LOCK_PROBES = ("iam:UpdateAccessKey", "iam:DeleteAccessKey")
# What the check does not probe, and why a missing one is still safe.
NOT_PROBED = {
    "iam:ListAccessKeys": "a read the plan makes before the first write",
    "iam:GetAccessKeyLastUsed": "a read the plan makes before the first write",
    "iam:ListUserTags": "a read the plan makes before the first write",
    "iam:TagUser": "the lock, the rotation's first write: denied, nothing is written",
    "iam:CreateAccessKey": "cannot be checked without creating a key: denied right after the lock, "
                           "no key is created and the lock is released",
}


def required_actions(store_backend="vault_file", audit_all_users=False, aws_consumers=False):
    """The sorted actions a run needs: rotate (and the audit of named users) with this store
    backend; audit_all_users adds iam:ListUsers, aws_consumers the calls on the parameters and
    secrets of consumers held in AWS."""
    if store_backend not in STORE_ACTIONS:
        raise ValueError("store backend %r: expected one of %s" % (store_backend, ", ".join(sorted(STORE_ACTIONS))))
    actions = set(ROTATE_ACTIONS)
    if audit_all_users:
        actions.update(AUDIT_ALL_USERS_ACTIONS)
    actions.update(STORE_ACTIONS[store_backend])
    if aws_consumers:
        actions.update(AWS_CONSUMER_ACTIONS)
    return sorted(actions)


def probe_calls(user_names, actions=None):
    """[(action, method, kwargs, granted_codes)] for each user (sorted, unique) and probe (of
    `actions` only, when given)."""
    calls = []
    for user in sorted(set(user_names)):
        for action, method, params, granted in PROBES:
            if actions is not None and action not in actions:
                continue
            kwargs = dict(params, UserName=user)
            calls.append((action, method, kwargs, granted))
    return calls


def judge(code, granted_codes):
    """'granted', 'denied' or 'inconclusive' for one probe's answer: code is None on success,
    else AWS's error code."""
    if code in granted_codes:
        return "granted"
    if code in DENIED_CODES:
        return "denied"
    return "inconclusive"


def summarize(answers):
    """answers: [(action, user, verdict)] with verdicts granted or denied ->
    {"denied": {action: [users]}, "ok": bool}."""
    denied = {}
    for action, user, verdict in answers:
        if verdict == "denied":
            denied.setdefault(action, []).append(user)
    return {"denied": dict((a, sorted(u)) for a, u in sorted(denied.items())), "ok": not denied}


def refusal_message(summary, policy_path="docs/iam-policy.json"):
    """The message a refused run fails with, or None when nothing is denied. It says that nothing
    was changed and names every denied action with its users."""
    if not summary["denied"]:
        return None
    parts = ["%s (IAM user%s %s)" % (action, "s" if len(users) > 1 else "", ", ".join("'%s'" % u for u in users))
             for action, users in sorted(summary["denied"].items())]
    return ("Nothing was changed: the credentials may not call %s. Grant every action of %s "
            "(rekey.aws's least-privilege policy) and run again." % ("; ".join(parts), policy_path))


def check(client, user_names, actions=None):
    """Run every probe with an IAM client (the rotation's credentials) on each user; returns
    summarize()'s dict. Changes nothing in IAM. An answer that says nothing about the permission
    (a missing user, throttling past the retries, refused credentials, the network) raises
    IamError, as the same failure of any other IAM call does."""
    answers = []
    for action, method, kwargs, granted in probe_calls(user_names, actions):
        try:
            getattr(client, method)(**kwargs)
            code = None
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code") or "Unknown"
            if judge(code, granted) == "inconclusive":
                raise map_error(exc, action, user_name=kwargs["UserName"]) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise map_error(exc, action, user_name=kwargs["UserName"]) from None
        verdict = judge(code, granted)
        if verdict == "inconclusive":  # a probe that cannot succeed did: never count it as checked
            raise IamError("%s on IAM user '%s' answered success to a probe that cannot succeed; "
                           "the permission check cannot be trusted" % (action, kwargs["UserName"]), action=action)
        answers.append((action, kwargs["UserName"], verdict))
    return summarize(answers)
