#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r"""
module: rotation_state
short_description: Record the phase of a key rotation on the IAM user, where any controller can see it
version_added: 0.1.0
description:
  - Keeps the durable state of one IAM user's key rotation in tags on that user, so that a re-run
    after a crash, on this or another controller, resumes instead of creating a third key.
  - "The tags: C(rekey:run) (run id), C(rekey:phase), C(rekey:old) and C(rekey:new) (key ids, empty
    when not known), C(rekey:updated) (when they last changed, ISO-8601 UTC). Never a secret."
  - The lock tags of M(rekey.aws.rotation_lock) and the user's other tags are left alone.
  - With O(state=present) it records what it is told, whichever run recorded the state before
    (returned in RV(previous)); take the user's lock with M(rekey.aws.rotation_lock) first.
  - Makes one C(ListUserTags) call, and one C(TagUser) or C(UntagUser) call only when something
    changes; with O(read=false), only the C(TagUser) or C(UntagUser) call.
  - Read the state with M(rekey.aws.rotation_state_info).
author:
  - rekey.aws contributors (@rekey)
requirements:
  - boto3
  - botocore
options:
  user_name:
    description: The IAM user whose rotation is recorded.
    type: str
    required: true
  state:
    description:
      - V(present) records O(run_id), O(phase), O(old_key_id) and O(new_key_id). C(rekey:updated) is
        set to the current time only when one of them changes.
      - V(absent) removes the state tags (when the rotation is over).
    type: str
    choices: [present, absent]
    default: present
  run_id:
    description:
      - The id of the run doing the rotation. Required with O(state=present).
      - With O(state=absent), the state is removed only when it belongs to this run; a state
        recorded by another run fails the task and is left alone. If not set, any state is removed.
      - Letters, digits, spaces and C(_.:/=+-@), at most 256 characters (what IAM allows in a tag value).
    type: str
  phase:
    description: The phase the rotation reached. Required with O(state=present).
    type: str
    choices: [planned, key_created, key_stored, key_verified, distributing, distributed, old_deactivated,
              old_retired, rolled_back]
  old_key_id:
    description: The id of the key being replaced, if any. Only with O(state=present).
    type: str
  new_key_id:
    description: The id of the key that replaces it, once created. Only with O(state=present).
    type: str
  read:
    description:
      - V(false) writes without reading the user's tags first, for a caller that knows them (a
        rotation holding the user's lock wrote them); with O(state=present) the state is always
        written (no same-state check, no room check, IAM refuses a 51st tag), with
        O(state=absent) every state tag is removed whichever run recorded it. Either way the task
        reports a change and RV(previous) is V(null).
    type: bool
    default: true
notes:
  - IAM allows 50 tags per user; the task fails before writing when the state tags would not fit.
seealso:
  - module: rekey.aws.rotation_state_info
  - module: rekey.aws.rotation_lock
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
      - The diff shows the recorded rotation before and after.
  idempotent:
    support: full
"""

EXAMPLES = r"""
- name: Record that the new key exists
  rekey.aws.rotation_state:
    user_name: demo-app
    run_id: "awx-job-4711"
    phase: key_created
    old_key_id: AKIAIOSFODNN7EXAMPLE
    new_key_id: AKIAI44QH8DHBEXAMPLE

- name: The rotation is over
  rekey.aws.rotation_state:
    user_name: demo-app
    run_id: "awx-job-4711"
    state: absent
"""

RETURN = r"""
rotation:
  description: The state recorded after the task (in check mode, what it would be); V(null) when none.
  type: dict
  returned: success
  contains: &rotation
    run_id:
      description: The run that recorded it.
      type: str
      sample: awx-job-4711
    phase:
      description: The phase the rotation reached.
      type: str
      sample: key_created
    old_key_id:
      description: The key being replaced; V(null) when none was recorded.
      type: str
      sample: AKIAIOSFODNN7EXAMPLE
    new_key_id:
      description: The key replacing it; V(null) when none was recorded.
      type: str
      sample: AKIAI44QH8DHBEXAMPLE
    updated:
      description: When the state last changed, ISO-8601 in UTC.
      type: str
      sample: "2024-05-01T12:00:00+00:00"
previous:
  description: The state recorded before the task; V(null) when none.
  type: dict
  returned: success
  contains: *rotation
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
from ansible_collections.rekey.aws.plugins.module_utils._keys import iso, key_id_problem
from ansible_collections.rekey.aws.plugins.module_utils._rotation import (
    PHASES,
    STATE_TAGS,
    decode_state,
    encode_state,
    present_keys,
    same_state,
    tag_room_problem,
    tag_value_problem,
)


def option_problem(params):
    if not params["user_name"]:
        return "user_name is empty: expected an IAM user name"
    if params["state"] == "absent":
        given = [name for name in ("phase", "old_key_id", "new_key_id") if params[name] is not None]
        if given:
            return "%s %s only used with state=present, not state=absent" % (
                " and ".join(given), "is" if len(given) == 1 else "are")
    if params["run_id"] is not None:
        problem = tag_value_problem("run_id", params["run_id"])
        if problem:
            return problem
    for name in ("old_key_id", "new_key_id"):
        if params[name] is not None:
            problem = key_id_problem(params[name], option=name)
            if problem:
                return problem
    return connection_problem(params)


def ensure_present(module, iam, user, tags, previous, now):
    p = module.params
    if same_state(previous, p["run_id"], p["phase"], p["old_key_id"], p["new_key_id"]):
        return {"changed": False, "rotation": previous, "previous": previous}
    problem = tag_room_problem(user, tags, STATE_TAGS)
    if problem:
        module.fail_json(msg=problem, previous=previous)
    desired = encode_state(p["run_id"], p["phase"], p["old_key_id"], p["new_key_id"], iso(now))
    if not module.check_mode:
        iam.tag_user(user, desired)
    rotation = decode_state([{"Key": k, "Value": v} for k, v in desired.items()])
    return {"changed": True, "rotation": rotation, "previous": previous}


def ensure_absent(module, iam, user, tags, previous):
    run_id = module.params["run_id"]
    if previous is not None and run_id is not None and previous["run_id"] != run_id:
        module.fail_json(msg="IAM user '%s' holds the state of run %s (phase %s), not of run %s: left alone. "
                         "Remove it without run_id if that run is over." % (user, previous["run_id"], previous["phase"],
                                                                            run_id), previous=previous)
    keys = present_keys(tags, STATE_TAGS)
    if not keys:
        return {"changed": False, "rotation": None, "previous": previous}
    if not module.check_mode:
        iam.untag_user(user, keys)
    return {"changed": True, "rotation": None, "previous": previous}


def run_blind(module, iam, user, now):
    """read=false: write (or remove) the state without reading the tags."""
    p = module.params
    if p["state"] == "absent":
        if not module.check_mode:
            iam.untag_user(user, STATE_TAGS)
        return {"changed": True, "rotation": None, "previous": None}
    desired = encode_state(p["run_id"], p["phase"], p["old_key_id"], p["new_key_id"], iso(now))
    if not module.check_mode:
        iam.tag_user(user, desired)
    return {"changed": True, "rotation": decode_state([{"Key": k, "Value": v} for k, v in desired.items()]),
            "previous": None}


def run(module, iam, now):
    user = module.params["user_name"]
    if not module.params["read"]:
        result = run_blind(module, iam, user, now)
        if module._diff:
            result["diff"] = {"before": {"rotation": "(not read: read=false)"}, "after": {"rotation": result["rotation"]}}
        return result
    tags = iam.user_tags(user)
    previous = decode_state(tags)
    if module.params["state"] == "present":
        result = ensure_present(module, iam, user, tags, previous, now)
    else:
        result = ensure_absent(module, iam, user, tags, previous)
    if module._diff:
        result["diff"] = {"before": {"rotation": previous}, "after": {"rotation": result["rotation"]}}
    return result


ARGUMENT_SPEC = connection_argspec(
    user_name={"type": "str", "required": True},
    state={"type": "str", "default": "present", "choices": ["present", "absent"]},
    run_id={"type": "str"},
    phase={"type": "str", "choices": list(PHASES)},
    old_key_id={"type": "str", "no_log": False},
    new_key_id={"type": "str", "no_log": False},
    read={"type": "bool", "default": True},
)
CONSTRAINTS = {"required_if": [("state", "present", ["run_id", "phase"])]}


def execute(module):
    """The module's work on validated parameters (also run in-process by the action plugin)."""
    problem = option_problem(module.params)
    if problem:
        module.fail_json(msg=problem)
    try:
        result = run(module, Iam.connect(module.params), datetime.datetime.now(datetime.timezone.utc))
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
