#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r"""
module: rotation_lock
short_description: Take or release the per-user lock of a key rotation, kept in IAM user tags
version_added: 0.1.0
description:
  - Keeps two runs from rotating the keys of the same IAM user at once, across controllers (for
    example AWX nodes). The lock lives in tags on each user, C(rekey:lock-run) (run id),
    C(rekey:lock-holder) (who) and C(rekey:lock-until) (expiry, ISO-8601 UTC).
  - With O(state=locked), every user's tags are read first. If another run holds a lock that has
    not expired on any of them, the task fails naming each such user, the run, its holder and
    when the lock expires, and nothing is written for any user. Otherwise the lock is written on
    every user, then read back to confirm it holds this run's id.
  - A lock held by the same O(run_id) is taken again, which moves its expiry to O(ttl_s) from now.
    An expired lock of another run is taken. A live lock of another run is taken only with
    O(takeover=true).
  - When writing or confirming fails for one user, the locks this task took on the others are
    released again (locks this run already held before the task are kept), so the task takes
    all the locks or none.
  - With O(state=unlocked), the lock of each user is removed only when it is held by O(run_id)
    (or with O(takeover=true)). A lock of another run is left alone, reported in RV(refused) and
    warned about; the task does not fail. A user that does not exist holds no lock.
  - Makes one C(ListUserTags) call per user, then with O(state=locked) one C(TagUser) and one
    C(ListUserTags) per user (see the notes for the only exception), with O(state=unlocked) one
    C(UntagUser) per user whose lock is removed. O(known), O(held_until) and O(read_back=false)
    leave out the C(ListUserTags) calls; O(record) and O(clear_state_of) write the rotation state
    in the same C(TagUser) or C(UntagUser) call as the lock.
author:
  - rekey.aws contributors (@rekey)
requirements:
  - boto3
  - botocore
options:
  user_names:
    description: The IAM users to lock or unlock, all at once.
    type: list
    elements: str
    required: true
  run_id:
    description:
      - The id of the run taking or releasing the lock, the same for every task of one run.
      - Letters, digits, spaces and C(_.:/=+-@), at most 256 characters (what IAM allows in a tag value).
    type: str
    required: true
  state:
    description: V(locked) takes the lock, V(unlocked) releases it.
    type: str
    choices: [locked, unlocked]
    default: locked
  holder:
    description:
      - Who holds the lock, for people reading the refusal, for example the controller's host
        name and process id. Required with O(state=locked), ignored with O(state=unlocked).
      - Letters, digits, spaces and C(_.:/=+-@), at most 256 characters.
    type: str
  ttl_s:
    description:
      - How long the lock lasts, in seconds (1 to 604800, 7 days). Take it again before it expires
        when the rotation runs longer. Ignored with O(state=unlocked).
      - A run killed while holding the lock keeps the users locked until then, unless another run
        passes O(takeover=true).
    type: int
    default: 3600
  takeover:
    description:
      - Take (or with O(state=unlocked), remove) a lock that another run holds, even when it has
        not expired. Only for a run known to be dead.
    type: bool
    default: false
  known:
    description:
      - The users' tags as M(rekey.aws.rotation_state_info) read them earlier in this run (its
        RV(rekey.aws.rotation_state_info#module:rotations)), with O(state=locked) the lock is
        decided on them instead of reading the tags again. Every user of O(user_names) needs an
        entry.
      - The read is then older (a run that locked the user since is seen only by O(read_back)).
    type: dict
  read_back:
    description:
      - With O(state=locked), read the lock back after writing it, to catch another run that
        wrote its lock at the same moment. V(false) saves one C(ListUserTags) per user.
    type: bool
    default: true
  held_until:
    description:
      - The expiry this run's previous rotation_lock task returned for these users
        (RV(locks[].until)). Until that moment the lock is this run's (only a takeover, which is for
        a dead run, can take it), so the tags are not read; O(state=locked) renews it with one
        C(TagUser) per user, O(state=unlocked) removes it with one C(UntagUser) per user.
      - Once it has passed, the tags are read as without it.
    type: str
  record:
    description:
      - With O(state=locked), the rotation state (the tags of M(rekey.aws.rotation_state)) to
        write in the same C(TagUser) call as the lock, one entry per user (each a user of
        O(user_names)).
    type: list
    elements: dict
    suboptions:
      user_name:
        description: The IAM user.
        type: str
        required: true
      phase:
        description: The phase the rotation reached (see M(rekey.aws.rotation_state)).
        type: str
        required: true
      old_key_id:
        description: The key being replaced.
        type: str
      new_key_id:
        description: The key replacing it.
        type: str
  clear_state_of:
    description:
      - With O(state=unlocked), the users (of O(user_names)) whose rotation state tags are removed
        in the same C(UntagUser) call as their lock, when the lock is removed.
    type: list
    elements: str
    default: []
  check_permissions:
    description:
      - With O(state=locked), before anything is written, check that the credentials may call
        C(iam:UpdateAccessKey) and C(iam:DeleteAccessKey) on each user, with calls that cannot
        change anything (on a key id IAM never issues). When one is denied, the task fails
        naming the actions and users, and nothing is written. Not in check mode.
    type: bool
    default: false
notes:
  - >-
    IAM tags have no compare-and-swap. Two runs that both read a user's tags before either wrote
    its lock can both write; the read-back after writing catches the run whose write landed first
    only when it reads after the other wrote. Two runs that start within the same second or two
    can therefore, rarely, both believe they hold the lock. Do not schedule overlapping runs for
    the same users (in AWX, leave "concurrent jobs" off for the job template); the lock protects
    against the overlaps that happen anyway, a slow run and the next schedule, or a second
    operator.
  - >-
    IAM is eventually consistent. When the read-back still shows the tags from before the write,
    it is repeated, up to 5 reads one second apart, before the task fails; that is the only case
    with more than two C(ListUserTags) calls per user.
seealso:
  - module: rekey.aws.rotation_state
  - module: rekey.aws.rotation_state_info
extends_documentation_fragment:
  - rekey.aws._connection
  - rekey.aws._attributes
  - rekey.aws._attributes.actiongroup_aws
attributes:
  check_mode:
    support: full
    details:
      - Reads the tags and decides, refusal included; writes nothing and does not read back.
  diff_mode:
    support: full
    details:
      - The diff shows each user's lock before and after.
  idempotent:
    support: partial
    details:
      - With O(state=locked), taking the lock again moves its expiry, so it always changes.
"""

EXAMPLES = r"""
- name: Lock the users of this rotation for two hours
  rekey.aws.rotation_lock:
    user_names: [demo-app, billing-app]
    run_id: "awx-job-4711"
    holder: "{{ lookup('ansible.builtin.pipe', 'hostname') }} job 4711"
    ttl_s: 7200

- name: Release them
  rekey.aws.rotation_lock:
    user_names: [demo-app, billing-app]
    run_id: "awx-job-4711"
    state: unlocked
"""

RETURN = r"""
locks:
  description: Each user's lock after the task (in check mode, what it would be), sorted by user name.
  type: list
  elements: dict
  returned: success
  contains:
    user_name:
      description: The IAM user.
      type: str
      sample: demo-app
    run_id:
      description: The run holding the lock; V(null) when the user is not locked.
      type: str
      sample: awx-job-4711
    holder:
      description: Who holds it; V(null) when the user is not locked.
      type: str
      sample: awx-node-2 pid 812
    until:
      description: When it expires, ISO-8601 in UTC; V(null) when the user is not locked.
      type: str
      sample: "2024-05-01T13:00:00+00:00"
    taken_over:
      description: Whether the task took or removed a lock of another run (expired, or with O(takeover=true)).
      type: bool
      sample: false
refused:
  description:
    - The locks of other runs that were not taken (O(state=locked), only in the failure result) or
      left alone (O(state=unlocked)).
  type: list
  elements: dict
  returned: always
  contains:
    user_name:
      description: The IAM user.
      type: str
      sample: demo-app
    run_id:
      description: The run holding the lock.
      type: str
      sample: awx-job-4702
    holder:
      description: Who holds it.
      type: str
      sample: awx-node-1 pid 533
    until:
      description: When it expires, ISO-8601 in UTC.
      type: str
      sample: "2024-05-01T12:30:00+00:00"
    expired:
      description: Whether it has expired.
      type: bool
      sample: false
"""

import datetime
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.rekey.aws.plugins.module_utils._connection import (
    BOTO3_IMPORT_ERROR,
    HAS_BOTO3,
    connection_argspec,
    connection_problem,
)
from ansible_collections.rekey.aws.plugins.module_utils._iam import Iam, IamError
from ansible_collections.rekey.aws.plugins.module_utils._keys import iso, key_id_problem
from ansible_collections.rekey.aws.plugins.module_utils._permissions import LOCK_PROBES
from ansible_collections.rekey.aws.plugins.module_utils._permissions import check as check_permissions
from ansible_collections.rekey.aws.plugins.module_utils._permissions import refusal_message as permission_refusal
from ansible_collections.rekey.aws.plugins.module_utils._rotation import (
    LOCK_TAGS,
    STATE_TAGS,
    decode_lock,
    encode_lock,
    encode_state,
    held,
    known_problem,
    known_tags,
    lock_decision,
    lock_entry,
    lock_until,
    lost_race_message,
    present_keys,
    readback_outcome,
    record_problem,
    refused_entry,
    refused_message,
    tag_room_problem,
    tag_value_problem,
    ttl_problem,
    unique_users,
    unlock_decision,
    user_names_problem,
)

READBACK_ATTEMPTS = 5
READBACK_PAUSE_S = 1


def option_problem(params):
    problem = user_names_problem(params["user_names"]) or tag_value_problem("run_id", params["run_id"])
    if problem:
        return problem
    users = unique_users(params["user_names"])
    if params["state"] == "locked":
        problem = tag_value_problem("holder", params["holder"]) or ttl_problem(params["ttl_s"])
        if problem:
            return problem
        if params["clear_state_of"]:
            return "clear_state_of is only used with state=unlocked"
        if params["record"]:
            problem = record_problem(params["record"], users)
            if problem:
                return problem
            for entry in params["record"]:
                for name in ("old_key_id", "new_key_id"):
                    if entry.get(name):
                        problem = key_id_problem(entry[name], option="record %s %s" % (entry["user_name"], name))
                        if problem:
                            return problem
    else:
        given = [name for name in ("record", "known") if params[name]]
        if given:
            return "%s only used with state=locked" % " and ".join(given)
        outside = sorted(set(params["clear_state_of"]) - set(users))
        if outside:
            return "clear_state_of names %s, not in user_names" % ", ".join(outside)
    return connection_problem(params)


def shown(lock):
    return None if lock is None else {"run_id": lock["run_id"], "holder": lock["holder"], "until": lock["until"]}


def release(iam, users, run_id, now):
    """Remove this run's lock from users (re-read first: never another run's). Returns the messages of
    the users where that failed."""
    problems = []
    for user in users:
        try:
            tags = iam.user_tags(user, missing_ok=True)
            lock = None if tags is None else decode_lock(tags, now)
            if lock is not None and lock["run_id"] == run_id:
                iam.untag_user(user, present_keys(tags, LOCK_TAGS))
        except IamError as error:
            problems.append(error.message)
    return problems


def release_note(iam, users, run_id, now):
    if not users:
        return ""
    problems = release(iam, users, run_id, now)
    if problems:
        return (" Releasing the locks this task took on %s failed: %s; remove them with state=unlocked."
                % (", ".join(users), "; ".join(problems)))
    return " The locks this task took on %s were released." % ", ".join(users)


def read_back(iam, users, before, wanted, now):
    """{user: (outcome, lock)} after writing; reads again while IAM still shows the old tags."""
    outcomes = {}
    pending = list(users)
    for attempt in range(READBACK_ATTEMPTS):
        if attempt:
            time.sleep(READBACK_PAUSE_S)
        for user in pending:
            lock = decode_lock(iam.user_tags(user), now)
            outcomes[user] = (readback_outcome(before[user], lock, *wanted), lock)
        pending = [u for u in pending if outcomes[u][0] == "stale"]
        if not pending:
            break
    return outcomes


def recorded_tags(params, now):
    """{user: state tags} of O(record)."""
    return dict((e["user_name"], encode_state(params["run_id"], e["phase"], e.get("old_key_id"), e.get("new_key_id"),
                                              iso(now)))
                for e in params["record"] or [])


def take(module, iam, users, before, decisions, now):
    p = module.params
    until = lock_until(now, p["ttl_s"])
    wanted = (p["run_id"], p["holder"], until)
    taken_now = [u for u in users if decisions[u] != "ours"]
    state = recorded_tags(p, now)
    written = []
    try:
        for user in users:
            iam.tag_user(user, dict(encode_lock(*wanted), **state.get(user, {})))
            written.append(user)
        if p["read_back"]:
            outcomes = read_back(iam, users, before, wanted, now)
        else:
            outcomes = dict((u, ("held", None)) for u in users)
    except IamError as error:
        note = release_note(iam, [u for u in taken_now if u in written], p["run_id"], now)
        module.fail_json(msg=error.message + note, error_code=error.code, action=error.action, changed=bool(written))
    lost = [u for u in users if outcomes[u][0] != "held"]
    if lost:
        note = release_note(iam, [u for u in taken_now if u not in lost], p["run_id"], now)
        module.fail_json(msg="%s.%s" % (". ".join(lost_race_message(u, p["run_id"], outcomes[u][1], outcomes[u][0])
                                                  for u in lost), note),
                         changed=True, refused=[refused_entry(u, outcomes[u][1]) for u in lost if outcomes[u][1]])
    return until


def held_lock(params):
    return {"run_id": params["run_id"], "holder": params["holder"], "until": params["held_until"], "expired": False}


def ensure_locked(module, iam, users, now):
    p = module.params
    if p["held_until"] and held(p["held_until"], now):
        before = dict((u, held_lock(p)) for u in users)
        decisions = dict((u, "ours") for u in users)
        return locked_result(module, iam, users, before, decisions, now)
    if p["known"]:
        problem = known_problem(p["known"], users)
        if problem:
            module.fail_json(msg=problem)
        tags = dict((u, known_tags(p["known"][u])) for u in users)
    else:
        tags = dict((u, iam.user_tags(u)) for u in users)
    before = dict((u, decode_lock(tags[u], now)) for u in users)
    decisions = dict((u, lock_decision(before[u], p["run_id"], p["takeover"])) for u in users)
    refused = [(u, before[u]) for u in users if decisions[u] == "refuse"]
    if refused:
        module.fail_json(msg=refused_message(refused), refused=[refused_entry(u, lock) for u, lock in refused],
                         locks=[lock_entry(u, shown(before[u]), False) for u in users])
    recorded = set(e["user_name"] for e in p["record"] or [])
    no_room = [problem for problem in (tag_room_problem(u, tags[u], LOCK_TAGS + (STATE_TAGS if u in recorded else ()))
                                       for u in users) if problem]
    if no_room:
        module.fail_json(msg=" ".join(no_room) + " Nothing was written for any user.")
    if p["check_permissions"] and not module.check_mode:
        denied = permission_refusal(check_permissions(iam.client, users, LOCK_PROBES))
        if denied:
            module.fail_json(msg=denied, locks=[lock_entry(u, shown(before[u]), False) for u in users])
    return locked_result(module, iam, users, before, decisions, now)


def locked_result(module, iam, users, before, decisions, now):
    p = module.params
    if module.check_mode:
        until = lock_until(now, p["ttl_s"])
    else:
        until = take(module, iam, users, before, decisions, now)
    after = {"run_id": p["run_id"], "holder": p["holder"], "until": until}
    locks = [lock_entry(u, after, decisions[u] in ("expired", "takeover")) for u in users]
    return {"changed": True, "locks": locks, "refused": []}, before, dict((u, after) for u in users)


def unlock_keys(params, user, tags=None):
    """The tag keys to remove with a user's lock (and its state with O(clear_state_of)), as stored."""
    keys = LOCK_TAGS + (STATE_TAGS if user in params["clear_state_of"] else ())
    return list(keys) if tags is None else present_keys(tags, keys)


def ensure_unlocked(module, iam, users, now):
    p = module.params
    if p["held_until"] and held(p["held_until"], now):
        if not module.check_mode:
            for user in users:
                iam.untag_user(user, unlock_keys(p, user))
        before = dict((u, held_lock(p)) for u in users)
        return ({"changed": True, "locks": [lock_entry(u, None, False) for u in users], "refused": []},
                before, dict((u, None) for u in users))
    tags = dict((u, iam.user_tags(u, missing_ok=True)) for u in users)
    before = dict((u, None if tags[u] is None else decode_lock(tags[u], now)) for u in users)
    after, locks, refused = {}, [], []
    for user in users:
        decision = unlock_decision(before[user], p["run_id"], p["takeover"])
        if decision in ("ours", "takeover"):
            if not module.check_mode:
                iam.untag_user(user, unlock_keys(p, user, tags[user]))
            after[user] = None
        else:
            after[user] = shown(before[user])
        if decision == "refuse":
            lock = before[user]
            refused.append(refused_entry(user, lock))
            module.warn("IAM user '%s' is locked by run %s (holder %s) until %s, not by run %s: left alone"
                        % (user, lock["run_id"], lock["holder"], lock["until"], p["run_id"]))
        locks.append(lock_entry(user, after[user], decision == "takeover"))
    changed = any(before[u] is not None and after[u] is None for u in users)
    return {"changed": changed, "locks": locks, "refused": refused}, before, after


def run(module, iam, now):
    users = unique_users(module.params["user_names"])
    if module.params["state"] == "locked":
        result, before, after = ensure_locked(module, iam, users, now)
    else:
        result, before, after = ensure_unlocked(module, iam, users, now)
    if module._diff:
        result["diff"] = {"before": {"locks": dict((u, shown(before[u])) for u in users)},
                          "after": {"locks": after}}
    return result


ARGUMENT_SPEC = connection_argspec(
    user_names={"type": "list", "elements": "str", "required": True},
    run_id={"type": "str", "required": True},
    state={"type": "str", "default": "locked", "choices": ["locked", "unlocked"]},
    holder={"type": "str"},
    ttl_s={"type": "int", "default": 3600},
    takeover={"type": "bool", "default": False},
    known={"type": "dict"},
    read_back={"type": "bool", "default": True},
    held_until={"type": "str"},
    record={"type": "list", "elements": "dict", "options": {
        "user_name": {"type": "str", "required": True},
        "phase": {"type": "str", "required": True},
        "old_key_id": {"type": "str", "no_log": False},
        "new_key_id": {"type": "str", "no_log": False},
    }},
    clear_state_of={"type": "list", "elements": "str", "default": []},
    check_permissions={"type": "bool", "default": False},
)
CONSTRAINTS = {"required_if": [("state", "locked", ["holder"])]}


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
