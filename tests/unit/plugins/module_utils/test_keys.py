"""Pure key logic: the normalized shape, the create decision, key id checks, the wait loop."""
import datetime
import sys

import pytest

from tests.support.ansible_run import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.rekey.aws.plugins.module_utils import _keys  # noqa: E402

UTC = datetime.timezone.utc
NOW = datetime.datetime(2024, 5, 31, 12, 0, 0, tzinfo=UTC)


def key(key_id, status="Active", created="2024-05-01T12:00:00+00:00", user="app", last_used=None):
    created_dt = _keys.utc(created)
    return {"access_key_id": key_id, "user_name": user, "status": status, "create_date": created,
            "age_days": _keys.age_days(created_dt, NOW), "last_used_date": last_used,
            "last_used_service": "sts" if last_used else None, "last_used_region": "us-east-1" if last_used else None}


@pytest.mark.parametrize("value", ["AKIAIOSFODNN7EXAMPLE", "A" * 16, "ASIA" + "0" * 124])
def test_key_id_accepts_access_key_ids(value):
    assert _keys.key_id_problem(value) is None


@pytest.mark.parametrize("value", ["xyz", "akiaiosfodnn7example", "AKIA-OSFODNN7EXAMPL", "A" * 15, "A" * 129, "", None,
                                   "AKIAIOSFODNN7EXAMPLE\n"])
def test_key_id_rejects_anything_else(value):
    assert _keys.key_id_problem(value) == (
        "id %r is not an access key id: expected 16-128 upper-case letters and digits" % (value,))


def test_key_id_message_names_the_option_and_value():
    assert _keys.key_id_problem("xyz", option="keys[1].access_key_id") == (
        "keys[1].access_key_id 'xyz' is not an access key id: expected 16-128 upper-case letters and digits")


@pytest.mark.parametrize("value,expected", [
    (datetime.datetime(2024, 5, 1, 12, 0, 0, 987654, tzinfo=UTC), "2024-05-01T12:00:00+00:00"),
    (datetime.datetime(2024, 5, 1, 14, 0, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
     "2024-05-01T12:00:00+00:00"),
    (datetime.datetime(2024, 5, 1, 12, 0, 0), "2024-05-01T12:00:00+00:00"),  # naive: taken as UTC
    ("2024-05-01T12:00:00Z", "2024-05-01T12:00:00+00:00"),
    (None, None),
])
def test_iso_is_utc_with_second_precision(value, expected):
    assert _keys.iso(value) == expected


def test_age_days_counts_whole_days_and_never_goes_negative():
    assert _keys.age_days(NOW - datetime.timedelta(days=3, hours=23), NOW) == 3
    assert _keys.age_days(NOW - datetime.timedelta(days=4), NOW) == 4
    assert _keys.age_days(NOW + datetime.timedelta(minutes=5), NOW) == 0


def test_normalize_key_from_aws_answers():
    metadata = {"UserName": "app", "AccessKeyId": "AKIAIOSFODNN7EXAMPLE", "Status": "Inactive",
                "CreateDate": datetime.datetime(2024, 5, 1, 11, 59, 59, 500000, tzinfo=UTC)}
    last_used = {"LastUsedDate": datetime.datetime(2024, 5, 30, 8, 0, tzinfo=UTC), "ServiceName": "s3",
                 "Region": "eu-west-1"}
    assert _keys.normalize_key(metadata, last_used, NOW) == {
        "access_key_id": "AKIAIOSFODNN7EXAMPLE", "user_name": "app", "status": "Inactive",
        "create_date": "2024-05-01T11:59:59+00:00", "age_days": 30,
        "last_used_date": "2024-05-30T08:00:00+00:00", "last_used_service": "s3", "last_used_region": "eu-west-1"}


@pytest.mark.parametrize("last_used", [None, {}, {"ServiceName": "N/A", "Region": "N/A"}])
def test_normalize_key_never_used(last_used):
    metadata = {"UserName": "app", "AccessKeyId": "AKIAIOSFODNN7EXAMPLE", "Status": "Active",
                "CreateDate": datetime.datetime(2024, 5, 31, 11, 0, tzinfo=UTC)}
    normalized = _keys.normalize_key(metadata, last_used, NOW)
    assert (normalized["age_days"], normalized["last_used_date"], normalized["last_used_service"],
            normalized["last_used_region"]) == (0, None, None, None)


def test_sort_keys_by_user_then_creation_and_keeps_same_second_keys_in_order():
    keys = [key("AKIAZZZZZZZZZZZZZZZZ", user="b", created="2024-01-01T00:00:00+00:00"),
            key("AKIABBBBBBBBBBBBBBBB", user="a", created="2024-03-01T00:00:00+00:00"),
            key("AKIAAAAAAAAAAAAAAAAA", user="a", created="2024-03-01T00:00:00+00:00"),
            key("AKIACCCCCCCCCCCCCCCC", user="a", created="2024-02-01T00:00:00+00:00")]
    assert [k["access_key_id"] for k in _keys.sort_keys(keys)] == [
        "AKIACCCCCCCCCCCCCCCC", "AKIABBBBBBBBBBBBBBBB", "AKIAAAAAAAAAAAAAAAAA", "AKIAZZZZZZZZZZZZZZZZ"]


OLD = key("AKIAOLD0000000000000", created="2024-01-01T12:00:00+00:00")          # 151 days
NEW = key("AKIANEW0000000000000", created="2024-05-21T12:00:00+00:00")          # 10 days
INACTIVE_NEW = key("AKIAINACTIVE00000000", status="Inactive", created="2024-05-30T12:00:00+00:00")


@pytest.mark.parametrize("keys,max_age,expected", [
    ([], None, None),
    ([INACTIVE_NEW], None, None),                      # an Inactive key never satisfies
    ([OLD], None, OLD),                                # no age limit: any Active key
    ([OLD, NEW], None, NEW),                           # the newest Active key is the one returned
    ([OLD], 90, None),                                 # too old: create
    ([OLD, NEW], 90, NEW),
    ([NEW], 10, None),                                 # age_days == max_age_days: due
    ([NEW], 11, NEW),
    ([NEW, INACTIVE_NEW], 0, None),                    # 0: always create
])
def test_create_decision(keys, max_age, expected):
    assert _keys.satisfying_key(keys, max_age) == expected


def test_no_room_message_names_both_keys_status_date_and_last_use():
    used = key("AKIAUSED000000000000", created="2024-01-01T12:00:00+00:00", last_used="2024-05-30T08:00:00+00:00")
    message = _keys.no_room_message("app", [INACTIVE_NEW, used])
    assert message.startswith("IAM user 'app' already has 2 access keys, the most AWS allows")
    assert ("AKIAUSED000000000000 (Active, created 2024-01-01T12:00:00+00:00, last used "
            "2024-05-30T08:00:00+00:00 (sts/us-east-1))") in message
    assert "AKIAINACTIVE00000000 (Inactive, created 2024-05-30T12:00:00+00:00, never used)" in message
    assert "never deletes a key to make room" in message


class FakeTime:
    """A clock that advances only when the loop sleeps or a check takes time."""

    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def answers(*outcomes, time=None, per_call=0.0):
    queue = list(outcomes)

    def check():
        if time is not None:
            time.now += per_call
        outcome = queue.pop(0) if len(queue) > 1 else queue[0]
        return outcome, ("arn:aws:iam::123456789012:user/app" if outcome == "authenticated" else
                         "InvalidClientTokenId" if outcome == "refused" else "Throttling")
    return check


def test_wait_needs_consecutive_successes_and_a_refusal_resets_the_streak():
    t = FakeTime()
    got = _keys.wait_for_key(answers("refused", "authenticated", "authenticated", "refused", "authenticated",
                                     "authenticated", "authenticated"),
                             "authenticated", 3, 60, 1, clock=t.clock, sleep=t.sleep)
    assert got == {"ok": True, "attempts": 7, "seconds": 6.0, "arn": "arn:aws:iam::123456789012:user/app",
                   "authenticated": True, "last_error": "InvalidClientTokenId"}


def test_wait_inconclusive_answers_neither_count_nor_break_the_streak():
    t = FakeTime()
    got = _keys.wait_for_key(answers("authenticated", "inconclusive", "authenticated", "inconclusive",
                                     "authenticated"), "authenticated", 3, 60, 1, clock=t.clock, sleep=t.sleep)
    assert (got["ok"], got["attempts"], got["last_error"]) == (True, 5, "Throttling")


def test_wait_for_refused():
    t = FakeTime()
    got = _keys.wait_for_key(answers("authenticated", "refused", "refused"), "refused", 2, 60, 0.5,
                             clock=t.clock, sleep=t.sleep)
    assert got == {"ok": True, "attempts": 3, "seconds": 1.0, "arn": None, "authenticated": False,
                   "last_error": "InvalidClientTokenId"}


def test_wait_gives_up_at_the_timeout_with_the_last_error():
    t = FakeTime()
    got = _keys.wait_for_key(answers("refused"), "authenticated", 3, 10, 1, clock=t.clock, sleep=t.sleep)
    assert (got["ok"], got["authenticated"], got["last_error"], got["attempts"]) == (
        False, False, "InvalidClientTokenId", 11)
    assert t.now - 100.0 <= 10


def test_wait_counts_slow_checks_against_the_timeout():
    t = FakeTime()
    got = _keys.wait_for_key(answers("inconclusive", time=t, per_call=4.0), "authenticated", 1, 10, 1,
                             clock=t.clock, sleep=t.sleep)
    assert (got["ok"], got["attempts"], got["seconds"]) == (False, 3, 14.0)
