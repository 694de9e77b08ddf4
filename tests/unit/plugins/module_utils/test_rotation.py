"""Pure rotation-state and lock logic: tag encoding and decoding, value checks, lock decisions, expiry."""
import datetime
import sys

import pytest

from tests.support.ansible_run import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.rekey.aws.plugins.module_utils import _rotation  # noqa: E402

UTC = datetime.timezone.utc
NOW = datetime.datetime(2024, 5, 31, 12, 0, 0, tzinfo=UTC)
OLD, NEW = "AKIAIOSFODNN7EXAMPLE", "AKIAI44QH8DHBEXAMPLE"


def tags(**values):
    """ListUserTags' shape from rekey tag names without the prefix (lock_run for rekey:lock-run)."""
    return [{"Key": "rekey:" + k.replace("_", "-"), "Value": v} for k, v in values.items()]


def lock(run_id="run-a", holder="ctl-1 pid 7", until="2024-05-31T13:00:00+00:00", expired=False):
    return {"run_id": run_id, "holder": holder, "until": until, "expired": expired}


@pytest.mark.parametrize("value", ["awx-job-4711", "ctl-1.example.com pid 812", "a_b.c:d/e=f+g-h@i", "x" * 256,
                                   "Zürich 2024", "2024-05-31T12:00:00+00:00"])
def test_tag_values_iam_accepts(value):
    assert _rotation.tag_value_problem("run_id", value) is None


def test_tag_value_too_long_names_the_option_length_and_limit():
    assert _rotation.tag_value_problem("run_id", "r" * 257) == (
        "run_id is 257 characters long: IAM tag values hold at most 256 (%r...)" % ("r" * 40))


@pytest.mark.parametrize("value,bad", [("host (pid 7)", "'(', ')'"), ("a;b", "';'"), ("tab\there", "'\\t'"),
                                       ("new\nline", "'\\n'")])
def test_tag_value_with_characters_iam_refuses_names_them(value, bad):
    assert _rotation.tag_value_problem("holder", value) == (
        "holder %r holds %s, which IAM does not allow in a tag value: expected letters, digits, spaces and "
        "_.:/=+-@" % (value, bad))


@pytest.mark.parametrize("value", ["", None])
def test_empty_tag_value_is_refused(value):
    assert _rotation.tag_value_problem("holder", value) == "holder is empty: expected a non-empty value"


def test_state_round_trip_with_empty_key_ids():
    encoded = _rotation.encode_state("run-a", "planned", None, None, "2024-05-31T12:00:00+00:00")
    assert encoded == {"rekey:run": "run-a", "rekey:phase": "planned", "rekey:old": "", "rekey:new": "",
                       "rekey:updated": "2024-05-31T12:00:00+00:00"}
    listed = [{"Key": k, "Value": v} for k, v in encoded.items()]
    assert _rotation.decode_state(listed) == {"run_id": "run-a", "phase": "planned", "old_key_id": None,
                                              "new_key_id": None, "updated": "2024-05-31T12:00:00+00:00"}


def test_no_state_tag_decodes_to_none_and_other_tags_are_ignored():
    others = [{"Key": "team", "Value": "payments"}]
    assert _rotation.decode_state(others) is None
    assert _rotation.decode_state(others + tags(lock_run="run-a")) is None
    assert _rotation.decode_lock(others + tags(run="run-a"), NOW) is None


def test_tag_keys_are_read_case_insensitively_and_removed_as_stored():
    listed = [{"Key": "Rekey:Phase", "Value": "distributing"}, {"Key": "rekey:RUN", "Value": "run-a"}]
    assert _rotation.decode_state(listed)["phase"] == "distributing"
    assert _rotation.present_keys(listed, _rotation.STATE_TAGS) == ["rekey:RUN", "Rekey:Phase"]


def test_same_state_compares_everything_but_the_timestamp():
    current = {"run_id": "run-a", "phase": "key_created", "old_key_id": OLD, "new_key_id": NEW,
               "updated": "2024-05-31T12:00:00+00:00"}
    assert _rotation.same_state(current, "run-a", "key_created", OLD, NEW)
    assert not _rotation.same_state(current, "run-a", "key_stored", OLD, NEW)
    assert not _rotation.same_state(current, "run-b", "key_created", OLD, NEW)
    assert not _rotation.same_state(current, "run-a", "key_created", OLD, None)
    assert not _rotation.same_state(dict(current, updated=None), "run-a", "key_created", OLD, NEW)
    assert not _rotation.same_state(None, "run-a", "key_created", OLD, NEW)
    planned = dict(current, phase="planned", old_key_id=None, new_key_id=None)
    assert _rotation.same_state(planned, "run-a", "planned", "", None)


def test_tag_room_counts_tags_iam_already_has():
    listed = [{"Key": "t%d" % i, "Value": ""} for i in range(45)] + tags(run="run-a", phase="planned")
    assert _rotation.tag_room_problem("app", listed, _rotation.STATE_TAGS) is None  # 47 + 3 = 50
    listed.append({"Key": "t45", "Value": ""})
    assert _rotation.tag_room_problem("app", listed, _rotation.STATE_TAGS) == (
        "IAM user 'app' has 48 tags and rekey.aws needs 3 more (rekey:old, rekey:new, rekey:updated); IAM allows at "
        "most 50 tags per user. Remove tags the user no longer needs and run again.")


@pytest.mark.parametrize("now,ttl,until", [
    (NOW, 3600, "2024-05-31T13:00:00+00:00"),
    (NOW.replace(microsecond=1), 1, "2024-05-31T12:00:02+00:00"),  # rounded up: never shorter than ttl
    (NOW.replace(microsecond=999999), 60, "2024-05-31T12:01:01+00:00"),
])
def test_lock_until_lasts_at_least_ttl(now, ttl, until):
    assert _rotation.lock_until(now, ttl) == until


@pytest.mark.parametrize("ttl", [0, -5, 604801])
def test_ttl_out_of_range_is_refused(ttl):
    assert _rotation.ttl_problem(ttl) == (
        "ttl_s=%d is not valid: expected seconds the lock lasts, 1 to 604800 (7 days)" % ttl)


def test_ttl_bounds_are_accepted():
    assert _rotation.ttl_problem(1) is None and _rotation.ttl_problem(604800) is None


def test_lock_decodes_with_expiry():
    listed = tags(lock_run="run-a", lock_holder="ctl-1 pid 7", lock_until="2024-05-31T12:00:01+00:00")
    assert _rotation.decode_lock(listed, NOW) == lock(until="2024-05-31T12:00:01+00:00")
    assert _rotation.decode_lock(listed, NOW + datetime.timedelta(seconds=1))["expired"] is True
    assert _rotation.decode_lock(listed, NOW + datetime.timedelta(seconds=2))["expired"] is True


@pytest.mark.parametrize("listed", [
    tags(lock_run="run-a", lock_holder="h", lock_until="tomorrow"),
    tags(lock_run="run-a", lock_holder="h"),
    tags(lock_holder="h", lock_until="2099-01-01T00:00:00+00:00"),
])
def test_a_lock_rekey_did_not_write_reads_as_expired(listed):
    assert _rotation.decode_lock(listed, NOW)["expired"] is True


@pytest.mark.parametrize("current,takeover,decision", [
    (None, False, "free"),
    (lock(), False, "ours"),
    (lock(expired=True), False, "ours"),
    (lock(run_id="run-b", expired=True), False, "expired"),
    (lock(run_id="run-b"), False, "refuse"),
    (lock(run_id="run-b"), True, "takeover"),
])
def test_lock_decision(current, takeover, decision):
    assert _rotation.lock_decision(current, "run-a", takeover) == decision


@pytest.mark.parametrize("current,takeover,decision", [
    (None, False, "free"),
    (lock(), False, "ours"),
    (lock(run_id="run-b", expired=True), False, "refuse"),  # unlock never removes another run's lock unasked
    (lock(run_id="run-b"), False, "refuse"),
    (lock(run_id="run-b"), True, "takeover"),
])
def test_unlock_decision(current, takeover, decision):
    assert _rotation.unlock_decision(current, "run-a", takeover) == decision


def test_refused_message_names_each_user_run_holder_and_expiry():
    message = _rotation.refused_message([
        ("app", lock(run_id="run-b", holder="ctl-2 pid 9")),
        ("billing", lock(run_id="run-c", holder="ctl-3 pid 1", until="2024-05-31T12:30:00+00:00")),
    ])
    assert message == (
        "IAM user 'app' is locked by run run-b (holder ctl-2 pid 9) until 2024-05-31T13:00:00+00:00; wait for it to "
        "finish, or after 2024-05-31T13:00:00+00:00 run again; pass rotate_lock_takeover=true (takeover=true on "
        "rekey.aws.rotation_lock) to take it over now if that run is dead. "
        "IAM user 'billing' is locked by run run-c (holder ctl-3 pid 1) until 2024-05-31T12:30:00+00:00; wait for it "
        "to finish, or after 2024-05-31T12:30:00+00:00 run again; pass rotate_lock_takeover=true (takeover=true on "
        "rekey.aws.rotation_lock) to take it over now if that run is dead. Nothing was written for any user.")


@pytest.mark.parametrize("before,after,outcome", [
    (None, lock(), "held"),
    (lock(run_id="run-b", expired=True), lock(), "held"),
    (None, None, "stale"),
    (lock(run_id="run-b", expired=True), lock(run_id="run-b", expired=True), "stale"),
    (None, lock(run_id="run-b"), "lost"),
    (lock(until="2024-05-31T12:10:00+00:00"), lock(run_id="run-b"), "lost"),
    (lock(run_id="run-b", expired=True), None, "lost"),
])
def test_readback_tells_ours_from_stale_from_another_runs(before, after, outcome):
    assert _rotation.readback_outcome(before, after, "run-a", "ctl-1 pid 7", "2024-05-31T13:00:00+00:00") == outcome


def test_lost_race_message_names_who_holds_it_now():
    assert _rotation.lost_race_message("app", "run-a", lock(run_id="run-b"), "lost") == (
        "IAM user 'app': the lock was written for run run-a but reading it back shows run run-b (holder ctl-1 pid 7) "
        "until 2024-05-31T13:00:00+00:00: another run wrote its lock at the same moment")
    assert _rotation.lost_race_message("app", "run-a", None, "stale") == (
        "IAM user 'app': the lock was written for run run-a but reading it back shows no lock: IAM still showed the "
        "tags from before the write")


@pytest.mark.parametrize("names,problem", [
    ([], "user_names is empty: expected at least one IAM user name"),
    ([""], "user_names is empty: expected at least one IAM user name"),
    (["app", ""], "user_names ['app', ''] holds an empty name: expected IAM user names"),
    (["app"], None),
])
def test_user_names(names, problem):
    assert _rotation.user_names_problem(names) == problem


def test_users_are_deduplicated_and_sorted():
    assert _rotation.unique_users(["b", "a", "b"]) == ["a", "b"]


# --- what the lock may leave out reading (issue 10) ---------------------------------------------

@pytest.mark.parametrize("held_until,expected", [
    ("2024-05-31T12:00:01+00:00", True),   # still ours
    ("2024-05-31T12:00:00+00:00", False),  # expires now: read
    ("2024-05-31T11:00:00+00:00", False),  # expired: another run may have taken it
    ("", False), (None, False), ("not a time", False),
])
def test_a_held_lock_is_trusted_only_until_it_expires(held_until, expected):
    assert _rotation.held(held_until, NOW) is expected


def test_known_tags_give_the_lock_decision_and_the_room_check_what_a_read_gives():
    read = tags(lock_run="run-a", lock_holder="ctl-1 pid 7", lock_until="2024-05-31T13:00:00+00:00",
                phase="planned") + [{"Key": "team", "Value": "ops"}]
    entry = {"lock": _rotation.decode_lock(read, NOW), "tag_keys": sorted(t["Key"] for t in read)}
    known = _rotation.known_tags(entry)
    assert _rotation.decode_lock(known, NOW) == _rotation.decode_lock(read, NOW)
    assert sorted(_rotation.tag_map(known)) == sorted(_rotation.tag_map(read))
    # The expiry is judged again when the lock is decided, not when it was read.
    later = NOW + datetime.timedelta(hours=2)
    assert _rotation.decode_lock(known, later)["expired"] is True


def test_known_tags_of_an_unlocked_user():
    entry = {"lock": None, "tag_keys": ["team"]}
    assert _rotation.decode_lock(_rotation.known_tags(entry), NOW) is None
    assert _rotation.known_tags(entry) == [{"Key": "team", "Value": ""}]


@pytest.mark.parametrize("known,problem", [
    ({"a": {"lock": None, "tag_keys": []}, "b": {"lock": None, "tag_keys": []}}, None),
    ({"a": {"lock": None, "tag_keys": []}}, "known has no rotation_state_info entry with tag_keys for b"),
    ({"a": {"lock": None}, "b": None}, "known has no rotation_state_info entry with tag_keys for a, b"),
])
def test_known_must_cover_every_user(known, problem):
    found = _rotation.known_problem(known, ["a", "b"])
    assert (found is None) if problem is None else found.startswith(problem)


@pytest.mark.parametrize("record,problem", [
    ([{"user_name": "a", "phase": "planned"}, {"user_name": "b", "phase": "distributed"}], None),
    ([{"user_name": "c", "phase": "planned"}], "record names IAM user 'c', which is not in user_names a, b"),
    ([{"user_name": "a", "phase": "planned"}, {"user_name": "a", "phase": "planned"}], "record names IAM user 'a' twice"),
    ([{"user_name": "a", "phase": "halfway"}], "record for IAM user 'a' has phase 'halfway'"),
])
def test_record_entries_name_a_locked_user_once_with_a_phase(record, problem):
    found = _rotation.record_problem(record, ["a", "b"])
    assert (found is None) if problem is None else found.startswith(problem)
