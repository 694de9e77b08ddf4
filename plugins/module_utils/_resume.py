# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# Internal to rekey.aws: not a public API, may change without notice.
"""Pure logic of resuming a rotation an earlier run left unfinished (the state recorded in IAM
user tags, see _rotation): per user a mode, a message, and the keys the plan then sees.

Modes:
  none      nothing recorded (or a rollback finished): plan as usual
  restart   recorded, but no new key of it exists: rotate anew
  discard   its new key exists but no host can have it (not stored, or the store lost it before
            any host got it): delete it, rotate anew
  revert    its new key was being distributed but the store no longer holds it (a vault file in a
            thrown-away AWX container, a deleted secret): the hosts that got it go back to the old
            key from the killed run's backups, then it is deleted and the rotation starts anew
  continue  its new key is stored: verify it again, distribute it to every host, finish
  finish    every host got its new key: re-check, retire the old key
  done      the old key is gone: clear the state
No AWS call, no boto3 import."""

from ansible_collections.rekey.aws.plugins.module_utils._coerce import whole
from ansible_collections.rekey.aws.plugins.module_utils._keys import utc
from ansible_collections.rekey.aws.plugins.module_utils._rotation import PHASES

MODES = ("none", "restart", "discard", "revert", "continue", "finish", "done")
# Modes whose rotation goes on with its recorded old key (the killed run found it due).
GOES_ON = ("restart", "discard", "revert", "continue", "finish")
# Modes whose recorded new key is deleted before anything else (after the hosts are put back, for revert).
DISCARDS = ("discard", "revert")
# Recorded phases at which the run asks the store whether it still holds the recorded new key:
# those that go on with it and need its secret (from distributed on, every host has the key and
# nothing reads the store any more).
STORE_PHASES = ("key_created", "key_stored", "key_verified", "distributing")
# Phases after which hosts may hold the new key: a rollback keeps that key.
HOSTS_MAY_HOLD = ("distributing", "distributed", "old_deactivated")

_CHECK_AND_CLEAR = "check the hosts, then remove the rekey:* state tags of the user"


def _orphan(keys, old, updated):
    """The one Active key created since the state was recorded and never used, else None: a key
    CreateAccessKey made for a run killed before it recorded the key id."""
    if updated is None:
        return None
    since = utc(updated)
    found = [k["access_key_id"] for k in keys
             if k["access_key_id"] != old and k["status"] == "Active" and utc(k["create_date"]) >= since
             and not k.get("last_used_date")]
    return found[0] if len(found) == 1 else None


def _mode(user, rec, keys, store_holds):
    """(mode, discard_key_id, error) for a recorded phase. store_holds: True, False, or None when
    the store was not asked (read as held after key_created: the phase was recorded after the
    store was written)."""
    phase, old, new = rec["phase"], rec["old_key_id"], rec["new_key_id"]
    ids = [k["access_key_id"] for k in keys]
    active = [k["access_key_id"] for k in keys if k["status"] == "Active"]
    if phase == "planned":
        orphan = _orphan(keys, old, rec.get("updated"))
        return ("discard", orphan, None) if orphan else ("restart", None, None)
    if phase == "key_created":
        if new not in ids:
            return "restart", None, None
        if new in active and store_holds:
            return "continue", None, None
        return "discard", new, None
    if phase in ("key_stored", "key_verified", "distributing"):
        if new not in ids:
            return "restart", None, None
        if new not in active:
            # Only a rollback deactivates a new key, after putting the hosts back on the old one.
            return "discard", new, None
        if old in active:
            if store_holds is False:
                # Its secret is lost: no host can be given it. Before distributing no host has it.
                return ("revert" if phase == "distributing" else "discard"), new, None
            return "continue", None, None
        if old in ids:
            return "finish", None, None
        return "none", None, (
            "IAM user %s: run %s recorded its rotation from %s to %s at phase %s, but %s no longer exists, so hosts "
            "not yet moved to %s may hold no working key. Nothing was changed: %s."
            % (user, rec["run_id"], old, new, phase, old, new, _CHECK_AND_CLEAR))
    if phase in ("distributed", "old_deactivated"):
        if new not in active:
            return "none", None, (
                "IAM user %s: run %s recorded that every host got %s (phase %s), but that key is %s. Nothing was "
                "changed: %s." % (user, rec["run_id"], new, phase, "Inactive" if new in ids else "gone",
                                  _CHECK_AND_CLEAR))
        return ("finish" if old in ids else "done"), None, None
    # old_retired: only clearing the state was left.
    return "done", None, None


def message(user, r):
    """What the run says about a resumed rotation ('' when nothing is resumed)."""
    if r["mode"] == "none":
        return ""
    what = {
        "restart": "its new key does not exist, so a new key is created",
        "discard": (
            "its new key %s never reached the secret store nor any host, so it is deleted and a new key is created"
            if r["phase"] in ("planned", "key_created") else
            "the secret store no longer holds its new key %s, which no host has yet, so it is deleted and a new key "
            "is created") % r["discard_key_id"],
        "revert": "the secret store no longer holds its new key %s, so the hosts that got it go back to the old key "
                  "%s from the backups of run %s, %s is deleted and a new key is created"
                  % (r["discard_key_id"], r["old_key_id"], r["run_id"], r["discard_key_id"]),
        "continue": "its new key %s is verified again and written to every host" % r["new_key_id"],
        "finish": "every host has its new key %s: the fleet is re-checked and the old key %s retired"
                  % (r["new_key_id"], r["old_key_id"]),
        "done": "the old key %s is gone, so only the state is cleared" % r["old_key_id"],
    }[r["mode"]]
    return "resuming rotation %s of user %s from phase %s: %s" % (r["run_id"], user, r["phase"], what)


def resume_user(user, recorded, keys, store_holds):
    """How this run goes on from what an earlier run recorded for one user.

    recorded: the user's entry of rotation_state_info (run_id, phase, old_key_id, new_key_id,
    updated) or None; keys: the user's keys (the normalized shape of _keys); store_holds: whether
    the secret store holds the recorded new key (asked at STORE_PHASES; None: not asked).
    Returns (resume, errors); resume has mode, phase, run_id, old_key_id, new_key_id,
    discard_key_id and message."""
    rec = dict(recorded or {})
    for field in ("run_id", "phase", "old_key_id", "new_key_id", "updated"):
        rec.setdefault(field, None)
    phase = rec["phase"]
    if phase is not None and phase not in PHASES:
        raise ValueError("IAM user %s: the recorded phase %r is not a phase rekey.aws records: expected one of %s"
                         % (user, phase, ", ".join(PHASES)))
    r = {"mode": "none", "phase": phase, "run_id": rec["run_id"], "old_key_id": rec["old_key_id"],
         "new_key_id": rec["new_key_id"], "discard_key_id": None, "message": ""}
    errors = []
    if not phase or phase == "rolled_back":
        return r, errors
    if rec["old_key_id"] and rec["old_key_id"] == rec["new_key_id"]:
        # Not written by rekey.aws: going on could delete the key every host holds as a "new" one.
        errors.append("IAM user %s: run %s recorded %s as both the old and the new key of its rotation (phase %s): "
                      "expected two different keys. Nothing was changed: %s."
                      % (user, rec["run_id"], rec["old_key_id"], phase, _CHECK_AND_CLEAR))
        return r, errors
    mode, discard, error = _mode(user, rec, keys, store_holds)
    r.update(mode=mode, discard_key_id=discard)
    if error:
        errors.append(error)
    active = [k["access_key_id"] for k in keys if k["status"] == "Active"]
    if mode in ("restart",) + DISCARDS and r["old_key_id"] not in active:
        errors.append("IAM user %s: run %s recorded a rotation from %s (phase %s), which is no longer an Active key. "
                      "Nothing was changed: check the keys of the user, then remove the rekey:* state tags of the "
                      "user." % (user, r["run_id"], r["old_key_id"], phase))
    r["message"] = message(user, r)
    return r, errors


def resume(users, recorded, keys, store_holds, max_age_days):
    """The resume decision of every selected user, and the keys the plan sees.

    recorded: {user: rotation_state_info entry}; keys: every key of the selected users; store_holds:
    {user: bool} (a user missing: not asked). The plan sees the keys without the new key of a resumed rotation, and the old key
    of a rotation that goes on Active and due (the killed run already decided to rotate it); for a
    rotation that is done, only its new key (its consumers are kept, nothing is rotated).
    Returns {users: {user: resume}, errors, keys_seen}."""
    out, errors, hidden, due = {}, [], [], []
    for user in users:
        own = [k for k in keys if k["user_name"] == user]
        r, problems = resume_user(user, recorded.get(user), own, store_holds.get(user))
        errors.extend(problems)
        if r["mode"] in DISCARDS:
            hidden.append(r["discard_key_id"])
        elif r["mode"] in ("continue", "finish"):
            hidden.append(r["new_key_id"])
        if r["mode"] in GOES_ON:
            due.append(r["old_key_id"])
        elif r["mode"] == "done":
            due.append(r["new_key_id"])
            hidden.extend(k["access_key_id"] for k in own if k["access_key_id"] != r["new_key_id"])
        out[user] = r
    seen = []
    for k in keys:
        if k["access_key_id"] in hidden:
            continue
        if k["access_key_id"] in due:
            k = dict(k, status="Active", age_days=max(whole(k["age_days"]), whole(max_age_days)))
        seen.append(k)
    return {"users": out, "errors": errors, "keys_seen": seen}
