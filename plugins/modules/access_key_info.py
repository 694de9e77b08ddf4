#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r"""
module: access_key_info
short_description: List IAM access keys with their age, status and last use
version_added: 0.1.0
description:
  - Lists the access keys of one IAM user, a list of users, or every user of the account, with
    status, creation date, age and last use, in the same shape as M(rekey.aws.access_key).
  - Makes one C(ListAccessKeys) call per user and one C(GetAccessKeyLastUsed) call per key
    (with O(last_used=decisive), only for users with more than one key). With O(access_key_ids),
    only one C(GetAccessKeyLastUsed) call per key.
author:
  - rekey.aws contributors (@rekey)
requirements:
  - boto3
  - botocore
options:
  user_name:
    description: One IAM user. Give exactly one of O(user_name), O(user_names) or O(all_users=true).
    type: str
  user_names:
    description: Several IAM users. A missing user fails the task, naming it.
    type: list
    elements: str
  all_users:
    description:
      - List the keys of every IAM user of the account (C(ListUsers), paginated).
      - A user deleted while the module runs is skipped.
    type: bool
    default: false
  min_age_days:
    description: Only keys at least this many days old.
    type: int
  status:
    description: Only keys with this status.
    type: str
    choices: [Active, Inactive]
  last_used:
    description:
      - V(all) reads the last use of every key.
      - V(decisive) reads it only for the users with more than one key, where it can decide
        something (which key to free, which key a killed run created); the key of a user with one
        key is returned with RV(access_keys[].last_used_read=false) and no last use.
    type: str
    choices: [all, decisive]
    default: all
  access_key_ids:
    description:
      - Read only the last use of these keys, without listing any user's keys. Instead of
        O(user_name), O(user_names) or O(all_users); not with O(min_age_days), O(status) or
        O(last_used=decisive).
      - Each entry of RV(access_keys) then holds only C(access_key_id), C(user_name) and the
        C(last_used_*) fields.
    type: list
    elements: str
seealso:
  - module: rekey.aws.access_key
extends_documentation_fragment:
  - rekey.aws._connection
  - rekey.aws._attributes
  - rekey.aws._attributes.actiongroup_aws
  - rekey.aws._attributes.info_module
"""

EXAMPLES = r"""
- name: Keys of one user
  rekey.aws.access_key_info:
    user_name: demo-app
  register: demo_keys

- name: Active keys older than 90 days, anywhere in the account
  rekey.aws.access_key_info:
    all_users: true
    status: Active
    min_age_days: 90
  register: due
"""

RETURN = r"""
access_keys:
  description: The keys, sorted by user name, then creation date (oldest first).
  type: list
  elements: dict
  returned: success
  contains:
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
    last_used_read:
      description: V(false) when O(last_used=decisive) did not read this key's last use.
      type: bool
      returned: when the last use was not read
      sample: false
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.rekey.aws.plugins.module_utils._connection import (
    BOTO3_IMPORT_ERROR,
    HAS_BOTO3,
    connection_argspec,
    connection_problem,
)
from ansible_collections.rekey.aws.plugins.module_utils._iam import Iam, IamError
from ansible_collections.rekey.aws.plugins.module_utils._keys import key_id_problem, sort_keys


def option_problem(params):
    chosen = [name for name in ("user_name", "user_names", "all_users", "access_key_ids")
              if params[name] not in (None, False)]
    if len(chosen) != 1:
        return ("give exactly one of user_name, user_names, all_users=true or access_key_ids; got %s"
                % (" and ".join(chosen) or "none of them"))
    if params["access_key_ids"] is not None:
        given = [name for name in ("min_age_days", "status") if params[name] is not None]
        if params["last_used"] != "all":
            given.append("last_used=%s" % params["last_used"])
        if given:
            return "%s not used with access_key_ids (it reads only their last use)" % " and ".join(given)
        for key_id in params["access_key_ids"]:
            problem = key_id_problem(key_id, option="access_key_ids")
            if problem:
                return problem
    if params["user_name"] == "":
        return "user_name is empty: expected an IAM user name"
    if params["user_names"] is not None and not [u for u in params["user_names"] if u]:
        return "user_names is empty: expected at least one IAM user name"
    if params["min_age_days"] is not None and params["min_age_days"] < 0:
        return "min_age_days=%d is not valid: expected 0 or more days" % params["min_age_days"]
    return connection_problem(params)


def list_keys(iam, params):
    if params["access_key_ids"] is not None:
        return [iam.key_last_use(key_id) for key_id in sorted(set(params["access_key_ids"]))]
    if params["all_users"]:
        users, missing_ok = iam.list_users(), True
    elif params["user_name"] is not None:
        users, missing_ok = [params["user_name"]], False
    else:
        users, missing_ok = sorted(set(u for u in params["user_names"] if u)), False
    keys = []
    for user in users:
        keys.extend(iam.user_keys(user, missing_ok=missing_ok, last_used=params["last_used"]))
    if params["status"]:
        keys = [k for k in keys if k["status"] == params["status"]]
    if params["min_age_days"] is not None:
        keys = [k for k in keys if k["age_days"] >= params["min_age_days"]]
    return sort_keys(keys)


ARGUMENT_SPEC = connection_argspec(
    user_name={"type": "str"},
    user_names={"type": "list", "elements": "str"},
    all_users={"type": "bool", "default": False},
    min_age_days={"type": "int"},
    status={"type": "str", "choices": ["Active", "Inactive"]},
    last_used={"type": "str", "default": "all", "choices": ["all", "decisive"]},
    access_key_ids={"type": "list", "elements": "str", "no_log": False},
)
CONSTRAINTS = {}


def execute(module):
    """The module's work on validated parameters (also run in-process by the action plugin)."""
    problem = option_problem(module.params)
    if problem:
        module.fail_json(msg=problem)
    try:
        keys = list_keys(Iam.connect(module.params), module.params)
    except IamError as error:
        module.fail_json(msg=error.message, error_code=error.code, action=error.action)
    return {"changed": False, "access_keys": keys}


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True, **CONSTRAINTS)
    if not HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3"), exception=BOTO3_IMPORT_ERROR)
    module.exit_json(**execute(module))


if __name__ == "__main__":
    main()
