"""rekey.aws.key_store's pure parts: option checks and the atomic 0600 write (its argument spec
against the module's DOCUMENTATION: test_docs_only_actions.py)."""
import os
import stat
import sys

import pytest
import yaml

from tests.support.ansible_run import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.rekey.aws.plugins.action import key_store as action  # noqa: E402
from ansible_collections.rekey.aws.plugins.modules import key_store as module  # noqa: E402

KEY_ID = "AKIAUNITTEST00000000"


@pytest.mark.parametrize("name", ["secret_access_key", "secret_key", "session_token"])
def test_secrets_are_no_log(name):
    assert action.ARGUMENT_SPEC[name]["no_log"] is True


def test_module_file_is_documentation_only():
    assert not hasattr(module, "main")
    for part in ("DOCUMENTATION", "EXAMPLES", "RETURN"):
        assert yaml.safe_load(getattr(module, part))


def args(**overrides):
    base = {"user_name": "app", "access_key_id": KEY_ID, "secret_access_key": "s", "state": "present"}
    base.update(overrides)
    return base


def test_validation_accepts_good_input():
    assert action.validation_problem(args()) is None
    assert action.validation_problem(args(state="absent", access_key_id=None, secret_access_key=None)) is None


@pytest.mark.parametrize("overrides, message", [
    ({"user_name": "a/b"}, "user name 'a/b' is not an IAM user name: expected 1 to 64 letters, digits or +=,.@_-"),
    ({"access_key_id": "AKIA-short"}, "access_key_id 'AKIA-short' is not an access key id: expected 16-128 "
                                      "upper-case letters and digits"),
    ({"secret_access_key": ""}, "secret_access_key is empty: expected the secret that goes with access_key_id"),
])
def test_validation_names_the_bad_value(overrides, message):
    assert action.validation_problem(args(**overrides)) == message


def test_write_atomically_creates_0600_file_in_0700_directory(tmp_path):
    path = tmp_path / "new" / "app.vault"
    old_umask = os.umask(0o022)
    try:
        action.write_atomically(str(path), b"one")
    finally:
        os.umask(old_umask)
    assert path.read_bytes() == b"one"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert os.listdir(path.parent) == ["app.vault"]


def test_write_atomically_replaces_and_tightens(tmp_path):
    path = tmp_path / "app.vault"
    path.write_bytes(b"old")
    path.chmod(0o644)
    inode = path.stat().st_ino
    action.write_atomically(str(path), b"new")
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_ino != inode  # replaced by rename, never rewritten in place


def test_write_atomically_leaves_the_old_file_and_no_temp_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "app.vault"
    path.write_bytes(b"old")

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(action.os, "replace", failing_replace)
    with pytest.raises(OSError):
        action.write_atomically(str(path), b"new")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["app.vault"]
