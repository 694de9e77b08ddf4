"""Test-only data for the decision tests: keys in the shape of _keys.normalize_key, consumers,
role variables, a fixed now."""
import datetime
import sys

from tests.support.ansible_run import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.rekey.aws.plugins.module_utils._keys import iso  # noqa: E402

UTC = datetime.timezone.utc
NOW = datetime.datetime(2024, 5, 31, 12, 0, 0, tzinfo=UTC)
ISO_FORMAT = "%Y-%m-%dT%H:%M:%S+00:00"
OLD, NEW, OTHER = "AKIAOLD0000000000001", "AKIANEW0000000000002", "AKIAOTHER00000000003"
RUN, KILLED_RUN = "20240531T120000Z-000001", "20240530T110000Z-000042"

SETTINGS = {
    "rotate_hosts": "all", "rotate_users": [], "rotate_max_age_days": 90, "rotate_force": False,
    "rotate_prune_unused_days": 30, "rotate_retire_key_ids": [], "rotate_retire": "delete",
    "rotate_store_backend": "vault_file", "rotate_store_dir": "/root/.rekey-aws/keys",
    "rotate_store_dir_outlives_job": False, "rotate_store_parameter_name": "/rekey/{user_name}",
    "rotate_verify_consecutive": 3, "rotate_verify_timeout_s": 120, "rotate_idle_window_s": 300,
    "rotate_deactivate_settle_s": 15, "rotate_health_interval_s": 1, "rotate_target_group": "rekey_rotate_targets",
    "rotate_backup_dir": "/var/lib/rekey-aws/backups", "rotate_report_path": "/root/.rekey-aws/reports/rotate-{run_id}.json",
}


def settings(**changes):
    return dict(SETTINGS, **changes)


def ago(days=0, hours=0, seconds=0):
    return iso(NOW - datetime.timedelta(days=days, hours=hours, seconds=seconds))


def key(key_id, user="app", status="Active", age=100, used=None, service=None, region=None, created=None):
    """A key `age` days old, last used `used` days ago (None: never), as access_key_info returns it."""
    return {"access_key_id": key_id, "user_name": user, "status": status,
            "create_date": created or ago(age), "age_days": age,
            "last_used_date": None if used is None else ago(used),
            "last_used_service": service, "last_used_region": region}


def consumer(name="app", user="app", **fields):
    c = {"name": name, "iam_user": user, "path": "/etc/%s/credentials" % name, "service": name,
         "health_url": "http://127.0.0.1:8080/health"}
    c.update(fields)
    return c


def state(phase, old=OLD, new=NEW, run_id=KILLED_RUN, updated=None):
    """A user's entry of rotation_state_info."""
    return {"run_id": run_id, "phase": phase, "old_key_id": old, "new_key_id": new,
            "updated": updated or ago(hours=1), "lock": None}
