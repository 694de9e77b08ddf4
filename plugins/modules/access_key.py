#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r"""
module: access_key
short_description: Manage the access keys of one IAM user
version_added: 0.1.0
description:
  - Ensures an Active access key exists (creating one only when none satisfies the task), or
    activates, deactivates or deletes a named key of one IAM user.
  - It never deletes a key to make room. When a key must be created and the user already has
    two keys, the AWS maximum, it fails and names both keys with their status and last use.
  - Only an Inactive key can be deleted, so a key in use is never removed in one step.
author:
  - rekey.aws contributors (@rekey)
requirements:
  - boto3
  - botocore
options:
  user_name:
    description: The IAM user whose keys are managed.
    type: str
    required: true
  state:
    description:
      - V(present) ensures the user has an Active key (see O(max_age_days)) and creates one if not.
      - V(active) and V(inactive) set the status of the key O(id).
      - V(absent) deletes the key O(id). It must be Inactive; a missing key is left alone.
    type: str
    choices: [present, absent, active, inactive]
    default: present
  id:
    description:
      - The access key id. Required with O(state=absent), O(state=active) and O(state=inactive);
        not allowed with O(state=present).
    type: str
    aliases: [access_key_id]
  max_age_days:
    description:
      - With O(state=present), an Active key younger than this many days satisfies the task;
        otherwise a new key is created.
      - If not set, any Active key satisfies the task. V(0) creates a key on every run.
      - Only allowed with O(state=present).
    type: int
  read_keys:
    description:
      - V(false) makes the one call the state asks for without listing the user's keys first
        (no C(ListAccessKeys), no C(GetAccessKeyLastUsed)), for a caller that already knows them,
        such as a rotation holding the user's lock. Then O(state=present) always creates a key
        (O(max_age_days) is not used; IAM refuses a third key with C(LimitExceeded)),
        O(state=active) and O(state=inactive) always report a change, and O(state=absent)
        deletes the key even when it is Active, so give it only a key known to be Inactive.
      - RV(access_keys) then lists only the key of the task.
    type: bool
    default: true
notes:
  - >-
    The secret of a created key is returned once, in RV(secret_access_key). Set C(no_log: true)
    on the task that registers it.
seealso:
  - module: rekey.aws.access_key_info
  - module: rekey.aws.access_key_verify
extends_documentation_fragment:
  - rekey.aws._connection
  - rekey.aws._attributes
  - rekey.aws._attributes.actiongroup_aws
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - The diff lists the user's keys before and after; it never holds a secret.
  idempotent:
    support: partial
    details:
      - With O(max_age_days=0) every run creates a key, by design.
"""

EXAMPLES = r"""
- name: Ensure the app user has an Active key younger than 90 days
  rekey.aws.access_key:
    user_name: demo-app
    max_age_days: 90
  register: app_key
  no_log: true

- name: Deactivate the old key
  rekey.aws.access_key:
    user_name: demo-app
    id: AKIAIOSFODNN7EXAMPLE
    state: inactive

- name: Delete it once nothing broke
  rekey.aws.access_key:
    user_name: demo-app
    id: AKIAIOSFODNN7EXAMPLE
    state: absent

- name: Same, with the connection set once for the play
  module_defaults:
    group/rekey.aws.aws:
      profile: iam-admin
      region: eu-west-1
  block:
    - name: Reactivate a key
      rekey.aws.access_key:
        user_name: demo-app
        id: AKIAIOSFODNN7EXAMPLE
        state: active
"""

RETURN = r"""
created:
  description: Whether a key was created (in check mode, whether one would be).
  type: bool
  returned: success
  sample: true
access_key:
  description:
    - The key created, acted on, or found to satisfy O(state=present).
    - V(null) when O(state=absent) found no such key, and in check mode when a key would be created.
  type: dict
  returned: success
  contains: &key
    access_key_id:
      description: The access key id.
      type: str
      sample: AKIAIOSFODNN7EXAMPLE
    user_name:
      description: The IAM user the key belongs to.
      type: str
      sample: demo-app
    status:
      description: V(Active) or V(Inactive).
      type: str
      sample: Active
    create_date:
      description: When the key was created, ISO-8601 in UTC.
      type: str
      sample: "2024-05-01T12:00:00+00:00"
    age_days:
      description: Whole days since the key was created.
      type: int
      sample: 12
    last_used_date:
      description: When the key was last used, ISO-8601 in UTC; V(null) if never.
      type: str
      sample: "2024-05-10T08:00:00+00:00"
    last_used_service:
      description: The AWS service the key was last used with; V(null) if never.
      type: str
      sample: s3
    last_used_region:
      description: The region the key was last used in; V(null) if never.
      type: str
      sample: us-east-1
access_keys:
  description:
    - All the user's keys after the change, sorted by creation date (oldest first).
    - In check mode, a key that would be created is not listed.
  type: list
  elements: dict
  returned: success
  contains: *key
secret_access_key:
  description:
    - The secret of the created key. AWS shows it only once. Sensitive.
  type: str
  returned: when a key was created (not in check mode)
  sample: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.rekey.aws.plugins.module_utils._connection import (
    BOTO3_IMPORT_ERROR,
    HAS_BOTO3,
    connection_argspec,
    connection_problem,
)
from ansible_collections.rekey.aws.plugins.module_utils._iam import Iam, IamError
from ansible_collections.rekey.aws.plugins.module_utils._keys import (
    MAX_KEYS_PER_USER,
    find_key,
    key_id_problem,
    no_room_message,
    satisfying_key,
    sort_keys,
)

STATUS = {"active": "Active", "inactive": "Inactive"}


def option_problem(params):
    state = params["state"]
    if state == "present" and params["id"] is not None:
        return "id is not used with state=present: a key id is given to state=active, inactive or absent"
    if state != "present" and params["max_age_days"] is not None:
        return "max_age_days is only used with state=present, not state=%s" % state
    if params["max_age_days"] is not None and params["max_age_days"] < 0:
        return "max_age_days=%d is not valid: expected 0 or more days" % params["max_age_days"]
    if params["id"] is not None:
        return key_id_problem(params["id"])
    return connection_problem(params)


def ensure_present(module, iam, user, keys):
    key = satisfying_key(keys, module.params["max_age_days"])
    if key is not None:
        return {"changed": False, "created": False, "access_key": key, "access_keys": keys}
    if len(keys) >= MAX_KEYS_PER_USER:
        module.fail_json(msg=no_room_message(user, keys), access_keys=keys)
    if module.check_mode:
        return {"changed": True, "created": True, "access_key": None, "access_keys": keys}
    key, secret = iam.create_key(user)
    return {"changed": True, "created": True, "access_key": key, "access_keys": sort_keys(keys + [key]),
            "secret_access_key": secret}


def ensure_status(module, iam, user, keys, status):
    key_id = module.params["id"]
    key = find_key(keys, key_id)
    if key is None:
        module.fail_json(msg="access key '%s' does not belong to IAM user '%s'; its keys: %s"
                         % (key_id, user, ", ".join(k["access_key_id"] for k in keys) or "none"), access_keys=keys)
    if key["status"] == status:
        return {"changed": False, "created": False, "access_key": key, "access_keys": keys}
    updated = dict(key, status=status)
    after = sort_keys([updated if k is key else k for k in keys])
    if not module.check_mode:
        iam.set_status(user, key_id, status)
    return {"changed": True, "created": False, "access_key": updated, "access_keys": after}


def ensure_absent(module, iam, user, keys):
    key_id = module.params["id"]
    key = find_key(keys, key_id)
    if key is None:
        return {"changed": False, "created": False, "access_key": None, "access_keys": keys}
    if key["status"] == "Active":
        module.fail_json(msg="access key '%s' of IAM user '%s' is Active: deactivate it first (state=inactive), "
                         "make sure nothing still uses it, then delete it" % (key_id, user), access_key=key, access_keys=keys)
    after = [k for k in keys if k is not key]
    changed = True if module.check_mode else iam.delete_key(user, key_id)
    return {"changed": changed, "created": False, "access_key": key, "access_keys": after}


def run_blind(module, iam, user, state):
    """read_keys=false: the one call the state asks for, on what the caller knows."""
    if state == "present":
        if module.check_mode:
            return {"changed": True, "created": True, "access_key": None, "access_keys": []}
        key, secret = iam.create_key(user)
        return {"changed": True, "created": True, "access_key": key, "access_keys": [key],
                "secret_access_key": secret}
    key_id = module.params["id"]
    if state == "absent":
        changed = True if module.check_mode else iam.delete_key(user, key_id)
        return {"changed": changed, "created": False, "access_key": None, "access_keys": []}
    key = {"access_key_id": key_id, "user_name": user, "status": STATUS[state]}
    if not module.check_mode:
        iam.set_status(user, key_id, STATUS[state])
    return {"changed": True, "created": False, "access_key": key, "access_keys": [key]}


def run(module, iam):
    user = module.params["user_name"]
    state = module.params["state"]
    if not module.params["read_keys"]:
        result = run_blind(module, iam, user, state)
        if module._diff:
            result["diff"] = {"before": {"access_keys": "(not read: read_keys=false)"},
                              "after": {"access_keys": result["access_keys"] or "(created on apply)"}}
        return result
    keys = iam.user_keys(user)
    if state == "present":
        result = ensure_present(module, iam, user, keys)
    elif state == "absent":
        result = ensure_absent(module, iam, user, keys)
    else:
        result = ensure_status(module, iam, user, keys, STATUS[state])
    if module._diff:
        after = result["access_keys"]
        if module.check_mode and result["created"]:
            after = after + [{"access_key_id": "(created on apply)", "user_name": user, "status": "Active"}]
        result["diff"] = {"before": {"access_keys": keys}, "after": {"access_keys": after}}
    return result


ARGUMENT_SPEC = connection_argspec(
    user_name={"type": "str", "required": True},
    state={"type": "str", "default": "present", "choices": ["present", "absent", "active", "inactive"]},
    id={"type": "str", "aliases": ["access_key_id"], "no_log": False},
    max_age_days={"type": "int"},
    read_keys={"type": "bool", "default": True},
)
CONSTRAINTS = {"required_if": [("state", state, ["id"]) for state in ("absent", "active", "inactive")]}


def execute(module):
    """The module's work on validated parameters (also run in-process by the action plugin)."""
    problem = option_problem(module.params)
    if problem:
        module.fail_json(msg=problem)
    try:
        result = run(module, Iam.connect(module.params))
    except IamError as error:
        module.fail_json(msg=error.message, error_code=error.code, action=error.action)
    return result


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True, **CONSTRAINTS)
    if not HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3"), exception=BOTO3_IMPORT_ERROR)
    module.exit_json(**execute(module))


if __name__ == "__main__":
    main()
