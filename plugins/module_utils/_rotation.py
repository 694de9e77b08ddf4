# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# Internal to rekey.aws: not a public API, may change without notice.
"""Pure logic about the durable rotation state and the per-user lock kept in IAM user tags:
tag names, encoding and decoding, value checks, the lock decision and its expiry. No AWS call and
no boto3 import here. Never a secret in any tag."""

import datetime
import unicodedata

from ansible_collections.rekey.aws.plugins.module_utils._keys import iso, utc

RUN, PHASE, OLD, NEW, UPDATED = "rekey:run", "rekey:phase", "rekey:old", "rekey:new", "rekey:updated"
LOCK_RUN, LOCK_HOLDER, LOCK_UNTIL = "rekey:lock-run", "rekey:lock-holder", "rekey:lock-until"
STATE_TAGS = (RUN, PHASE, OLD, NEW, UPDATED)
LOCK_TAGS = (LOCK_RUN, LOCK_HOLDER, LOCK_UNTIL)

PHASES = ("planned", "key_created", "key_stored", "key_verified", "distributing", "distributed",
          "old_deactivated", "old_retired", "rolled_back")

MAX_TAGS_PER_USER = 50
MAX_TAG_VALUE = 256
TAG_VALUE_PUNCTUATION = "_.:/=+-@"
MAX_TTL_S = 7 * 86400


def tag_value_problem(option, value):
    """A message when value cannot be an IAM tag value (letters, digits, spaces and _.:/=+-@,
    at most 256 characters) or is empty, else None."""
    if not isinstance(value, str) or not value:
        return "%s is empty: expected a non-empty value" % option
    if len(value) > MAX_TAG_VALUE:
        return ("%s is %d characters long: IAM tag values hold at most %d (%r...)"
                % (option, len(value), MAX_TAG_VALUE, value[:40]))
    bad = sorted(set(c for c in value if not _tag_char(c)))
    if bad:
        return ("%s %r holds %s, which IAM does not allow in a tag value: expected letters, digits, "
                "spaces and %s" % (option, value, ", ".join(repr(c) for c in bad), TAG_VALUE_PUNCTUATION))
    return None


def _tag_char(char):
    return char.isalnum() or char in TAG_VALUE_PUNCTUATION or unicodedata.category(char).startswith("Z")


def tag_map(tags):
    """{lower-cased key: (key as stored, value)} from ListUserTags' Tags: IAM tag keys are
    case-insensitive, so rekey:Run and rekey:run are the same tag."""
    return dict((t["Key"].lower(), (t["Key"], t.get("Value", ""))) for t in tags)


def _value(tags, key):
    found = tag_map(tags).get(key)
    return None if found is None else found[1]


def present_keys(tags, keys):
    """The keys among `keys` that the user has, spelled as stored (UntagUser wants them so)."""
    stored = tag_map(tags)
    return [stored[k][0] for k in keys if k in stored]


def decode_state(tags):
    """The rotation recorded in the tags, {run_id, phase, old_key_id, new_key_id, updated}; None when
    no state tag is there. Empty values read as None."""
    values = dict((k, _value(tags, k)) for k in STATE_TAGS)
    if all(v is None for v in values.values()):
        return None
    return {"run_id": values[RUN] or None, "phase": values[PHASE] or None, "old_key_id": values[OLD] or None,
            "new_key_id": values[NEW] or None, "updated": values[UPDATED] or None}


def encode_state(run_id, phase, old_key_id, new_key_id, updated):
    return {RUN: run_id, PHASE: phase, OLD: old_key_id or "", NEW: new_key_id or "", UPDATED: updated}


def same_state(current, run_id, phase, old_key_id, new_key_id):
    """True when the recorded state already says this (and has its timestamp)."""
    return (current is not None and current["updated"] is not None
            and (current["run_id"], current["phase"], current["old_key_id"], current["new_key_id"])
            == (run_id, phase, old_key_id or None, new_key_id or None))


def tag_room_problem(user_name, tags, new_keys):
    """A message when adding new_keys would take the user past IAM's 50 tags, else None."""
    after = set(tag_map(tags)) | set(k.lower() for k in new_keys)
    if len(after) <= MAX_TAGS_PER_USER:
        return None
    return ("IAM user '%s' has %d tags and rekey.aws needs %d more (%s); IAM allows at most %d tags per user. "
            "Remove tags the user no longer needs and run again."
            % (user_name, len(tags), len(after) - len(tag_map(tags)),
               ", ".join(k for k in new_keys if k.lower() not in tag_map(tags)), MAX_TAGS_PER_USER))


def ttl_problem(ttl_s):
    if ttl_s < 1 or ttl_s > MAX_TTL_S:
        return "ttl_s=%d is not valid: expected seconds the lock lasts, 1 to %d (7 days)" % (ttl_s, MAX_TTL_S)
    return None


def lock_until(now, ttl_s):
    """ISO UTC expiry at least ttl_s seconds after now (rounded up to the next whole second)."""
    until = utc(now) + datetime.timedelta(seconds=ttl_s)
    if until.microsecond:
        until += datetime.timedelta(seconds=1)
    return iso(until)


def decode_lock(tags, now):
    """The lock recorded in the tags, {run_id, holder, until, expired}; None when no lock tag is
    there. A lock without a run id or a readable expiry was not written by rekey.aws: it reads
    as expired."""
    values = dict((k, _value(tags, k)) for k in LOCK_TAGS)
    if all(v is None for v in values.values()):
        return None
    until = _parse_time(values[LOCK_UNTIL])
    expired = not values[LOCK_RUN] or until is None or utc(now) >= until
    return {"run_id": values[LOCK_RUN] or None, "holder": values[LOCK_HOLDER] or None,
            "until": values[LOCK_UNTIL] or None, "expired": expired}


def _parse_time(value):
    if not value:
        return None
    try:
        return utc(value)
    except ValueError:
        return None


def encode_lock(run_id, holder, until):
    return {LOCK_RUN: run_id, LOCK_HOLDER: holder, LOCK_UNTIL: until}


def lock_decision(lock, run_id, takeover):
    """How state=locked treats a user's current lock: "free" (none), "ours" (this run's, re-taken),
    "expired" (another run's, expired), "takeover" (another run's, live, taken because takeover),
    or "refuse"."""
    if lock is None:
        return "free"
    if lock["run_id"] == run_id:
        return "ours"
    if lock["expired"]:
        return "expired"
    return "takeover" if takeover else "refuse"


def unlock_decision(lock, run_id, takeover):
    """How state=unlocked treats a user's current lock: "free" (nothing to remove), "ours",
    "takeover" (another run's, removed because takeover), or "refuse" (another run's, left alone,
    expired or not)."""
    if lock is None:
        return "free"
    if lock["run_id"] == run_id:
        return "ours"
    return "takeover" if takeover else "refuse"


def locked_message(user_name, lock):
    until = lock["until"] or "an unknown time"
    return ("IAM user '%s' is locked by run %s (holder %s) until %s; wait for it to finish, or after %s run again; "
            "pass rotate_lock_takeover=true (takeover=true on rekey.aws.rotation_lock) to take it over now if that "
            "run is dead" % (user_name, lock["run_id"], lock["holder"] or "unknown", until, until))


def refused_message(refused):
    """The failure message of state=locked for every (user_name, lock) another run holds."""
    return "%s. Nothing was written for any user." % ". ".join(locked_message(u, lock) for u, lock in refused)


def readback_outcome(before, after, run_id, holder, until):
    """What reading the lock back after writing it shows: "held" (ours, as written), "stale" (still
    the lock from before the write: IAM is eventually consistent, read again) or "lost" (another
    run wrote its own lock after ours)."""
    def fields(lock):
        return None if lock is None else (lock["run_id"], lock["holder"], lock["until"])
    if fields(after) == (run_id, holder, until):
        return "held"
    if fields(after) == fields(before):
        return "stale"
    return "lost"


def lost_race_message(user_name, run_id, lock, outcome):
    seen = "no lock" if lock is None else "run %s (holder %s) until %s" % (lock["run_id"], lock["holder"], lock["until"])
    why = ("another run wrote its lock at the same moment" if outcome == "lost"
           else "IAM still showed the tags from before the write")
    return ("IAM user '%s': the lock was written for run %s but reading it back shows %s: %s"
            % (user_name, run_id, seen, why))


def lock_entry(user_name, lock, taken_over):
    """The per-user shape returned in `locks`."""
    lock = lock or {}
    return {"user_name": user_name, "run_id": lock.get("run_id"), "holder": lock.get("holder"),
            "until": lock.get("until"), "taken_over": taken_over}


def refused_entry(user_name, lock):
    return {"user_name": user_name, "run_id": lock["run_id"], "holder": lock["holder"], "until": lock["until"],
            "expired": lock["expired"]}


def user_names_problem(user_names):
    names = [u for u in user_names or [] if u]
    if not names:
        return "user_names is empty: expected at least one IAM user name"
    if len(names) != len(user_names):
        return "user_names %r holds an empty name: expected IAM user names" % (user_names,)
    return None


def unique_users(user_names):
    return sorted(set(user_names))


def known_tags(entry):
    """The tags a rotation_state_info entry describes, as ListUserTags would return them: its lock
    and every other tag key (values that the lock and its room check do not need are empty)."""
    lock = entry.get("lock") or {}
    values = {LOCK_RUN: lock.get("run_id"), LOCK_HOLDER: lock.get("holder"), LOCK_UNTIL: lock.get("until")}
    tags = [{"Key": k, "Value": v or ""} for k, v in values.items() if v is not None]
    seen = set(k.lower() for k in values if values[k] is not None)
    tags.extend({"Key": k, "Value": ""} for k in entry.get("tag_keys") or [] if k.lower() not in seen)
    return tags


def known_problem(known, users):
    """A message when `known` (rotation_state_info's rotations) lacks an entry or its tag_keys for
    one of users, else None."""
    missing = sorted(u for u in users if not isinstance(known.get(u), dict) or "tag_keys" not in known[u])
    if missing:
        return ("known has no rotation_state_info entry with tag_keys for %s: expected the rotations "
                "rotation_state_info returned for every user of user_names" % ", ".join(missing))
    return None


def held(held_until, now):
    """Whether this run's lock, which the run wrote with expiry held_until, is still its own without
    reading the tags: until it expires, only a takeover (for a dead run) can take it."""
    until = _parse_time(held_until)
    return until is not None and utc(now) < until


def record_problem(record, users):
    """A message when a `record` entry (user_name, phase, old_key_id, new_key_id) is not for one of
    users, names a user twice or has no known phase, else None."""
    seen = set()
    for entry in record:
        user = entry.get("user_name")
        if user not in users:
            return "record names IAM user %r, which is not in user_names %s" % (user, ", ".join(users))
        if user in seen:
            return "record names IAM user %r twice: expected one state per user" % user
        seen.add(user)
        if entry.get("phase") not in PHASES:
            return "record for IAM user %r has phase %r: expected one of %s" % (user, entry.get("phase"), ", ".join(PHASES))
    return None
