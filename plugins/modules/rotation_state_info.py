#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r"""
module: rotation_state_info
short_description: Read the recorded rotation state and lock of IAM users
version_added: 0.1.0
description:
  - Reads what M(rekey.aws.rotation_state) and M(rekey.aws.rotation_lock) keep in the tags of
    each IAM user, so that a run can resume a rotation another run left unfinished.
  - Makes one C(ListUserTags) call per user (paginated).
author:
  - rekey.aws contributors (@rekey)
requirements:
  - boto3
  - botocore
options:
  user_names:
    description: The IAM users. A missing user fails the task, naming it.
    type: list
    elements: str
    required: true
seealso:
  - module: rekey.aws.rotation_state
  - module: rekey.aws.rotation_lock
extends_documentation_fragment:
  - rekey.aws._connection
  - rekey.aws._attributes
  - rekey.aws._attributes.actiongroup_aws
  - rekey.aws._attributes.info_module
"""

EXAMPLES = r"""
- name: What did earlier runs leave?
  rekey.aws.rotation_state_info:
    user_names: [demo-app, billing-app]
  register: recorded

- name: Resume where the last run stopped
  ansible.builtin.debug:
    msg: "{{ item.key }}: {{ item.value.phase }}"
  loop: "{{ recorded.rotations | dict2items | selectattr('value.phase') }}"
"""

RETURN = r"""
rotations:
  description:
    - One entry per user, keyed by user name. Every entry has every field; a field is V(null) when
      its tag is absent, so a user without any rotation tag has V(null) everywhere.
  type: dict
  returned: success
  sample:
    demo-app:
      run_id: awx-job-4711
      phase: distributing
      old_key_id: AKIAIOSFODNN7EXAMPLE
      new_key_id: AKIAI44QH8DHBEXAMPLE
      updated: "2024-05-01T12:03:00+00:00"
      lock:
        run_id: awx-job-4711
        holder: awx-node-2 pid 812
        until: "2024-05-01T13:00:00+00:00"
        expired: false
      tag_keys: [rekey:lock-holder, rekey:lock-run, rekey:lock-until, rekey:new, rekey:old, rekey:phase, rekey:run,
                 rekey:updated, team]
  contains:
    run_id:
      description: The run that recorded the state.
      type: str
    phase:
      description: The phase the rotation reached.
      type: str
    old_key_id:
      description: The key being replaced.
      type: str
    new_key_id:
      description: The key replacing it.
      type: str
    updated:
      description: When the state last changed, ISO-8601 in UTC.
      type: str
    lock:
      description: The user's lock; V(null) when the user is not locked.
      type: dict
      contains:
        run_id:
          description: The run holding the lock.
          type: str
        holder:
          description: Who holds it.
          type: str
        until:
          description: When it expires, ISO-8601 in UTC.
          type: str
        expired:
          description: Whether it has expired (a lock without a readable expiry counts as expired).
          type: bool
    tag_keys:
      description:
        - The keys of every tag of the user, sorted (no values), so that M(rekey.aws.rotation_lock)
          given this entry in O(rekey.aws.rotation_lock#module:known) can tell whether its tags fit.
      type: list
      elements: str
"""

import datetime

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.rekey.aws.plugins.module_utils._connection import (
    BOTO3_IMPORT_ERROR,
    HAS_BOTO3,
    connection_argspec,
    connection_problem,
)
from ansible_collections.rekey.aws.plugins.module_utils._iam import Iam, IamError
from ansible_collections.rekey.aws.plugins.module_utils._rotation import (
    decode_lock,
    decode_state,
    unique_users,
    user_names_problem,
)

NO_STATE = {"run_id": None, "phase": None, "old_key_id": None, "new_key_id": None, "updated": None}


def read(iam, users, now):
    rotations = {}
    for user in users:
        tags = iam.user_tags(user)
        rotations[user] = dict(decode_state(tags) or NO_STATE, lock=decode_lock(tags, now),
                               tag_keys=sorted(t["Key"] for t in tags))
    return rotations


ARGUMENT_SPEC = connection_argspec(
    user_names={"type": "list", "elements": "str", "required": True},
)
CONSTRAINTS = {}


def execute(module):
    """The module's work on validated parameters (also run in-process by the action plugin)."""
    problem = user_names_problem(module.params["user_names"]) or connection_problem(module.params)
    if problem:
        module.fail_json(msg=problem)
    try:
        rotations = read(Iam.connect(module.params), unique_users(module.params["user_names"]),
                         datetime.datetime.now(datetime.timezone.utc))
    except IamError as error:
        module.fail_json(msg=error.message, error_code=error.code, action=error.action)
    return {"changed": False, "rotations": rotations}


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True, **CONSTRAINTS)
    if not HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3"), exception=BOTO3_IMPORT_ERROR)
    module.exit_json(**execute(module))


if __name__ == "__main__":
    main()
