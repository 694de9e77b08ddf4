"""rekey.aws.credentials_file run in-process: validation, errors, and how the file is replaced."""
import contextlib
import json
import os
import re
import stat
import sys
from unittest import mock

import pytest

from tests.support.ansible_run import collections_path

sys.path.insert(0, collections_path())

from ansible.module_utils import basic  # noqa: E402

from ansible_collections.rekey.aws.plugins.modules import credentials_file  # noqa: E402

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core < 2.19
    @contextlib.contextmanager
    def patch_module_args(args):
        payload = json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode()
        with mock.patch.object(basic, "_ANSIBLE_ARGS", payload):
            yield

KEY_ID = "AKIAUNITTEST00000000"
SECRET = "unit/Secret+Value0000000000000000000000"
OTHER_SECRET = "other/Secret+Value111111111111111111111"
NOBODY = 65534


def run_module(capsys, check_mode=False, diff=False, **args):
    args.setdefault("access_key_id", KEY_ID)
    args.setdefault("secret_access_key", SECRET)
    args.update(_ansible_check_mode=check_mode, _ansible_diff=diff)
    capsys.readouterr()
    with patch_module_args(args), as_target(), pytest.raises(SystemExit):
        credentials_file.main()
    out = capsys.readouterr().out
    return json.loads(out), out


def as_target():
    """Run as a module on a target. Once a controller plugin (lookup, action) has been imported in
    this process, ansible-core 2.19+ sends module warnings to the controller's display instead."""
    internal = sys.modules.get("ansible.module_utils._internal")
    if internal is None or not hasattr(internal, "is_controller"):
        return contextlib.nullcontext()
    return mock.patch.object(internal, "is_controller", False)


@pytest.fixture
def creds(tmp_path):
    return tmp_path / "credentials"


def assert_fails(capsys, expected, **args):
    result, out = run_module(capsys, **args)
    assert result.get("failed"), result
    assert expected in result["msg"]
    assert SECRET not in out
    return result


@pytest.mark.parametrize("args, expected", [
    ({"access_key_id": "akia-lower"}, "access_key_id 'akia-lower' does not look like an AWS access key id: "
                                      "expected 16 to 128 upper-case letters and digits"),
    ({"access_key_id": "AKIA1"}, "access_key_id 'AKIA1' does not look like"),
    ({"secret_access_key": None}, "secret_access_key is required with state=present"),
    ({"access_key_id": None}, "access_key_id is required with state=present"),
    ({"profile": "a]b"}, "profile 'a]b' is not a valid profile name"),
    ({"profile": "two\nlines"}, "is not a valid profile name"),
    ({"mode": 384}, "mode must be a quoted string such as '0600' or 'u=rw,g=,o=', got the number 384"),
    ({"mode": "0999"}, "mode '0999' is neither an octal mode like '0600' nor a symbolic mode"),
    ({"mode": "rw"}, "mode 'rw' is neither"),
    ({"owner": "no-such-user-rekey"}, "owner 'no-such-user-rekey' is not a user on this host"),
    ({"group": "no-such-group-rekey"}, "group 'no-such-group-rekey' is not a group on this host"),
    ({"state": "gone"}, "value of state must be one of: present, absent"),
])
def test_bad_input_is_refused_naming_the_value(capsys, creds, args, expected):
    assert_fails(capsys, expected, path=str(creds), **args)
    assert not creds.exists()


def test_missing_options_are_refused_by_the_argument_spec(capsys, creds):
    args = {"path": str(creds), "_ansible_check_mode": False, "_ansible_diff": False}
    capsys.readouterr()
    with patch_module_args(args), pytest.raises(SystemExit):
        credentials_file.main()
    result = json.loads(capsys.readouterr().out)
    assert "state is present but all of the following are missing: access_key_id, secret_access_key" in result["msg"]


@pytest.mark.parametrize("secret", [SECRET + "\n[evil]", " " + SECRET, SECRET + "\t", ""])
def test_a_secret_that_would_break_the_file_is_refused_without_echo(capsys, creds, secret):
    result, out = run_module(capsys, path=str(creds), secret_access_key=secret)
    assert result["failed"]
    assert "secret_access_key must be a non-empty single line" in result["msg"]
    assert SECRET not in out
    assert not creds.exists()


def test_missing_parent_directory_is_a_clear_error(capsys, tmp_path):
    assert_fails(capsys, "parent directory %s of %s does not exist" % (tmp_path / "nope", tmp_path / "nope" / "c"),
                 path=str(tmp_path / "nope" / "c"))


def test_parent_that_is_a_file_is_a_clear_error(capsys, tmp_path):
    (tmp_path / "file").write_text("")
    assert_fails(capsys, "parent directory %s of %s is not a directory" % (tmp_path / "file", tmp_path / "file" / "c"),
                 path=str(tmp_path / "file" / "c"))


def test_relative_path_is_refused(capsys):
    assert_fails(capsys, "path 'credentials' is relative; expected an absolute path (or one starting with ~)",
                 path="credentials")


def test_directory_path_is_a_clear_error(capsys, tmp_path):
    assert_fails(capsys, "%s is a directory; expected the path of a credentials file" % tmp_path, path=str(tmp_path))


def test_fifo_path_is_a_clear_error(capsys, tmp_path):
    os.mkfifo(tmp_path / "fifo")
    assert_fails(capsys, "is not a regular file", path=str(tmp_path / "fifo"))


@pytest.mark.parametrize("content, expected", [
    (b"\xff\xfe[default]\n", "is not UTF-8 text"),
    (b"[default]\nx = 1\n[default]\ny = 2\n", "profile [default] appears twice (lines 1 and 3)"),
])
def test_unparseable_file_is_a_clear_error_and_left_untouched(capsys, creds, content, expected):
    creds.write_bytes(content)
    before = os.stat(creds)
    assert_fails(capsys, expected, path=str(creds), backup=True)
    assert creds.read_bytes() == content
    assert os.stat(creds).st_mtime_ns == before.st_mtime_ns
    assert os.listdir(creds.parent) == ["credentials"]


def test_temp_file_has_final_mode_and_owner_before_the_rename(capsys, creds):
    creds.write_text("[default]\naws_access_key_id = AKIAOLDKEY0000000000\n")
    creds.chmod(0o644)
    seen = []
    real_rename = os.rename

    def spy(src, dst):
        st = os.stat(src)
        with open(src) as handle:
            seen.append((stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, handle.read(), os.path.dirname(src)))
        return real_rename(src, dst)

    with mock.patch.object(credentials_file.os, "rename", spy):
        result, out = run_module(capsys, path=str(creds), owner=str(NOBODY), group=str(NOBODY), mode="0640")
    assert result["changed"] and not result.get("failed"), result
    assert len(seen) == 1
    mode, uid, gid, text, directory = seen[0]
    assert (mode, uid, gid, directory) == (0o640, NOBODY, NOBODY, str(creds.parent))
    assert SECRET in text
    st = os.stat(creds)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, NOBODY, NOBODY)


def test_failed_rename_leaves_original_and_no_temp_or_backup(capsys, creds):
    original = b"[default]\naws_access_key_id = AKIAOLDKEY0000000000\n"
    creds.write_bytes(original)
    creds.chmod(0o600)

    def refuse(src, dst):
        raise OSError(16, "Device or resource busy")

    with mock.patch.object(credentials_file.os, "rename", refuse):
        result = assert_fails(capsys, "cannot write %s: Device or resource busy; the file was left unchanged" % creds,
                              path=str(creds), backup=True)
    assert "backup_file" not in result
    assert creds.read_bytes() == original
    assert os.listdir(creds.parent) == ["credentials"]


@pytest.mark.parametrize("original_mode, backup_mode", [(0o644, 0o600), (0o640, 0o600), (0o400, 0o400), (0o600, 0o600)])
def test_backup_is_an_exact_copy_never_wider_than_0600_or_the_original(capsys, creds, original_mode, backup_mode):
    original = b"[default]\r\naws_access_key_id = AKIAOLDKEY0000000000\r\naws_secret_access_key = old\r\n"
    creds.write_bytes(original)
    os.chown(creds, NOBODY, NOBODY)
    creds.chmod(original_mode)
    mtime = os.stat(creds).st_mtime_ns
    result, out = run_module(capsys, path=str(creds), backup=True)
    backup = result["backup_file"]
    assert os.path.dirname(backup) == str(creds.parent)
    assert re.fullmatch(r"credentials\.%d\.\d{4}-\d\d-\d\d@\d\d:\d\d:\d\d~" % os.getpid(), os.path.basename(backup))
    with open(backup, "rb") as handle:
        assert handle.read() == original
    st = os.stat(backup)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns) == (backup_mode, NOBODY, NOBODY, mtime)
    # the file itself kept its owner (not given) and got the default mode
    st = os.stat(creds)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o600, NOBODY, NOBODY)
    assert creds.read_bytes() == original.replace(b"AKIAOLDKEY0000000000", KEY_ID.encode()).replace(
        b"= old\r\n", b"= " + SECRET.encode() + b"\r\n")


def test_no_backup_when_only_attributes_change(capsys, creds):
    run_module(capsys, path=str(creds))
    result, out = run_module(capsys, path=str(creds), backup=True, mode="0400")
    assert result["changed"] and "backup_file" not in result
    assert os.listdir(creds.parent) == ["credentials"]
    assert stat.S_IMODE(os.stat(creds).st_mode) == 0o400


def test_symlink_is_followed_and_kept(capsys, tmp_path):
    target = tmp_path / "real"
    target.write_text("[other]\nx = 1\n")
    link = tmp_path / "link"
    link.symlink_to(target)
    result, out = run_module(capsys, path=str(link))
    assert result["changed"]
    assert link.is_symlink()
    assert target.read_text().startswith("[other]\nx = 1\n\n[default]\naws_access_key_id = %s\n" % KEY_ID)


@pytest.mark.parametrize("existing, mode, expected", [(None, "u=rw", 0o600), (None, "u=rw,g=r", 0o640),
                                                      (0o640, "u=rw", 0o640), (0o644, "go=", 0o600),
                                                      (0o644, "600", 0o600)])
def test_symbolic_modes_apply_to_the_existing_mode_or_to_0000(capsys, creds, existing, mode, expected):
    if existing is not None:
        creds.write_text("")
        creds.chmod(existing)
    result, out = run_module(capsys, path=str(creds), mode=mode)
    assert not result.get("failed"), result
    assert stat.S_IMODE(os.stat(creds).st_mode) == expected


def test_world_readable_mode_warns(capsys, creds):
    result, out = run_module(capsys, path=str(creds), mode="0644")
    # ansible-core 2.19+ returns structured warnings, older ones strings
    assert "mode 0644 lets every user on the host read the secret in %s" % creds in json.dumps(result["warnings"])


def test_diff_masks_secrets_of_every_profile_including_ones_not_passed_to_the_task(capsys, creds):
    creds.write_text("[other]\naws_access_key_id = AKIAOTHERKEY00000000\naws_secret_access_key = %s\n" % OTHER_SECRET)
    creds.chmod(0o600)
    result, out = run_module(capsys, diff=True, check_mode=True, path=str(creds), session_token="tok-" + SECRET)
    assert OTHER_SECRET not in out and SECRET not in out
    text_diff = result["diff"][0]
    assert "aws_secret_access_key = ********" in text_diff["before"]
    assert text_diff["after"].endswith(
        "[default]\naws_access_key_id = %s\naws_secret_access_key = ********\naws_session_token = ********\n" % KEY_ID)
    assert len(result["diff"]) == 1  # mode and owner already right
    assert OTHER_SECRET in creds.read_text() and SECRET not in creds.read_text()


def test_state_absent_on_a_missing_file_creates_nothing(capsys, creds):
    result, out = run_module(capsys, path=str(creds), state="absent", access_key_id=None, secret_access_key=None)
    assert result["changed"] is False and result["access_key_id"] is None
    assert not creds.exists()


def test_legacy_security_token_and_stale_session_token_are_removed(capsys, creds):
    creds.write_text("[default]\naws_access_key_id = AKIAOLDKEY0000000000\naws_secret_access_key = old\n"
                     "aws_security_token = legacy\naws_session_token = stale\nregion = x\n")
    creds.chmod(0o600)
    result, out = run_module(capsys, path=str(creds))
    assert result["changed"]
    assert creds.read_text() == "[default]\naws_access_key_id = %s\naws_secret_access_key = %s\nregion = x\n" % (
        KEY_ID, SECRET)
