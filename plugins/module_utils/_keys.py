# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# Internal to rekey.aws: not a public API, may change without notice.
"""Pure logic about access keys: the normalized key shape, the create decision, key id checks and
the wait-until-authenticated loop. No AWS call and no boto3 import here."""

import datetime
import re
import time

KEY_ID_RE = re.compile(r"\A[A-Z0-9]{16,128}\Z")
MAX_KEYS_PER_USER = 2
_NOT_USED = ("N/A", "", None)
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def key_id_problem(value, option="id"):
    """A message when value is not an access key id, else None."""
    if isinstance(value, str) and KEY_ID_RE.match(value):
        return None
    return "%s %r is not an access key id: expected 16-128 upper-case letters and digits" % (option, value)


def utc(value):
    """An aware UTC datetime from a datetime (naive ones are taken as UTC) or an ISO-8601 string."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        return value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(datetime.timezone.utc)


def iso(value):
    """ISO-8601 UTC, second precision, e.g. 2024-05-01T12:00:00+00:00; None stays None."""
    value = utc(value)
    return None if value is None else value.replace(microsecond=0).isoformat()


def age_days(created, now):
    return max(0, int((utc(now) - utc(created)).total_seconds() // 86400))


def last_use_fields(last_used):
    """The last_used_* fields of the shared shape from GetAccessKeyLastUsed's AccessKeyLastUsed
    (None or {} when unknown)."""
    last_used = last_used or {}
    service = last_used.get("ServiceName")
    region = last_used.get("Region")
    return {
        "last_used_date": iso(last_used.get("LastUsedDate")),
        "last_used_service": None if service in _NOT_USED else service,
        "last_used_region": None if region in _NOT_USED else region,
    }


def normalize_key(metadata, last_used, now):
    """The shared key shape from a ListAccessKeys entry and a GetAccessKeyLastUsed answer's
    AccessKeyLastUsed (None or {} when unknown)."""
    return dict({
        "access_key_id": metadata["AccessKeyId"],
        "user_name": metadata["UserName"],
        "status": metadata["Status"],
        "create_date": iso(metadata["CreateDate"]),
        "age_days": age_days(metadata["CreateDate"], now),
    }, **last_use_fields(last_used))


def sort_keys(keys):
    """Sorted by user name, then creation date (oldest first). The sort is stable: keys created in
    the same second keep the order they came in (callers pass them in creation order)."""
    return sorted(keys, key=lambda k: (k["user_name"], utc(k["create_date"]) or _EPOCH))


def find_key(keys, key_id):
    for key in keys:
        if key["access_key_id"] == key_id:
            return key
    return None


def satisfying_key(keys, max_age_days=None):
    """The newest Active key that satisfies state=present, or None when one must be created.

    With max_age_days None any Active key satisfies; otherwise it must be younger than that many
    days (so 0 never satisfies)."""
    fresh = [k for k in keys if k["status"] == "Active" and (max_age_days is None or k["age_days"] < max_age_days)]
    return sort_keys(fresh)[-1] if fresh else None


def describe_key(key):
    if key.get("last_used_date"):
        use = "last used %s" % key["last_used_date"]
        where = "/".join(v for v in (key.get("last_used_service"), key.get("last_used_region")) if v)
        if where:
            use += " (%s)" % where
    else:
        use = "never used"
    return "%s (%s, created %s, %s)" % (key["access_key_id"], key["status"], key["create_date"], use)


def no_room_message(user_name, keys):
    return ("IAM user '%s' already has %d access keys, the most AWS allows, and a new one must be created: %s. "
            "Nothing was changed: this module never deletes a key to make room. Deactivate the key that is "
            "no longer used (state=inactive), make sure nothing breaks, delete it (state=absent) and run again."
            % (user_name, len(keys), "; ".join(describe_key(k) for k in sort_keys(keys))))


def wait_for_key(check, expect, consecutive, timeout, interval, clock=time.monotonic, sleep=time.sleep):
    """Call check() until `consecutive` results in a row match expect ("authenticated" or "refused").

    check() returns (outcome, detail): outcome "authenticated", "refused" or "inconclusive"
    (throttling, 5xx, network: says nothing about the key, so it neither counts nor breaks a
    streak); detail is the ARN when authenticated, else the error code.
    Returns a dict: ok, attempts, seconds, arn, authenticated, last_error."""
    start = clock()
    deadline = start + timeout
    streak = attempts = 0
    arn = last_error = None
    authenticated = False
    while True:
        attempts += 1
        outcome, detail = check()
        if outcome == "authenticated":
            authenticated, arn = True, detail
        elif outcome == "refused":
            authenticated, arn = False, None
        if outcome == "inconclusive" or outcome == "refused":
            last_error = detail
        if outcome == expect:
            streak += 1
        elif outcome != "inconclusive":
            streak = 0
        now = clock()
        if streak >= consecutive:
            return {"ok": True, "attempts": attempts, "seconds": round(now - start, 3), "arn": arn,
                    "authenticated": authenticated, "last_error": last_error}
        if now + interval > deadline:
            return {"ok": False, "attempts": attempts, "seconds": round(now - start, 3), "arn": arn,
                    "authenticated": authenticated, "last_error": last_error}
        sleep(interval)
