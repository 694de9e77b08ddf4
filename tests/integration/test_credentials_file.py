"""rekey.aws.credentials_file through ansible-playbook on localhost, state checked out-of-band.

The rhythm: check mode, apply, check-mode idempotence, idempotence; between runs the file's bytes,
mode, owner and inode are read with plain Python, not with the module.
"""
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support.ansible_run import local_play, run_playbook

KEY_ID = "AKIAINTEGRATION00001"
SECRET = "integration/Secret+Value00000000000000000"
OLD_SECRET = "old/Secret+Value1111111111111111111111111"
OTHER_SECRET = "other/Secret+Value2222222222222222222222"
NOBODY, NOGROUP = 65534, 65534
# The other tests run the module with the controller's Python; the rhythm runs on the fleet's
# interpreter and on the oldest target Python we support.
TARGET_PYTHONS = {
    "fleet-python3": "/usr/bin/python3",
    "python3.9": os.path.expanduser("~/.pyenv/versions/3.9.18/bin/python3.9"),
}
EXISTING = f"""\
# Credentials for the demo host. Edit with care.

[other]
aws_access_key_id = AKIAOTHERPROFILE0001
aws_secret_access_key = {OTHER_SECRET}

# the application's key
[default]
aws_access_key_id=AKIAOLDKEY0000000001
aws_secret_access_key={OLD_SECRET}
region=eu-west-1
"""


def write_task(name="write", **args):
    task_args = {"access_key_id": KEY_ID, "secret_access_key": SECRET}
    task_args.update(args)
    return {"name": name, "rekey.aws.credentials_file": task_args}


def run(tasks, python=None, **kwargs):
    env = {"ANSIBLE_PYTHON_INTERPRETER": python} if python else None
    result = run_playbook(local_play(tasks), env=env, **kwargs)
    assert not result.failed, result.stdout + result.stderr
    assert result.rc == 0, result.stdout + result.stderr
    return result


def snapshot(path):
    st = os.stat(path)
    return {"bytes": Path(path).read_bytes(), "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid,
            "gid": st.st_gid, "inode": st.st_ino, "mtime": st.st_mtime_ns, "ctime": st.st_ctime_ns}


def assert_no_secret(run_result, *secrets):
    text = run_result.stdout + run_result.stderr + repr(run_result.results)
    for secret in secrets:
        assert secret not in text


@pytest.mark.parametrize("python", TARGET_PYTHONS.values(), ids=TARGET_PYTHONS.keys())
def test_rhythm_on_a_new_file(tmp_path, python):
    if not os.access(python, os.X_OK):
        pytest.skip(f"target interpreter {python} is not installed")
    creds = tmp_path / "credentials"
    task = write_task(path=str(creds), profile="app")

    checked = run([task], python=python, check=True, diff=True)
    assert checked.task("write")["changed"] is True
    assert checked.task("write")["result"]["access_key_id"] == KEY_ID
    assert "aws_secret_access_key = ********" in checked.stdout
    assert not creds.exists()
    assert list(tmp_path.iterdir()) == []

    applied = run([task], python=python)
    assert applied.task("write")["changed"] is True
    assert applied.task("write")["result"]["access_key_id"] == KEY_ID
    assert "backup_file" not in applied.task("write")["result"]
    first = snapshot(creds)
    assert first["bytes"] == f"[app]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n".encode()
    assert (first["mode"], first["uid"], first["gid"]) == (0o600, os.geteuid(), os.getegid())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["credentials"]

    again = run([dict(write_task("check again", path=str(creds), profile="app"), check_mode=True),
                 write_task("apply again", path=str(creds), profile="app", backup=True)], python=python)
    assert again.task("check again")["changed"] is False
    assert again.task("apply again")["changed"] is False
    assert "backup_file" not in again.task("apply again")["result"]
    assert snapshot(creds) == first  # not even rewritten: same inode, mtime and ctime
    assert_no_secret(checked, SECRET)
    assert_no_secret(applied, SECRET)


def test_update_keeps_other_profiles_and_comments_backs_up_and_masks_everything(tmp_path):
    creds = tmp_path / "credentials"
    creds.write_text(EXISTING)
    creds.chmod(0o644)
    original = snapshot(creds)
    task = write_task(path=str(creds), backup=True)

    checked = run([task], check=True, diff=True, args=["-vvv"])
    assert checked.task("write")["changed"] is True
    assert "backup_file" not in checked.task("write")["result"]
    assert snapshot(creds) == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["credentials"]

    applied = run([task], diff=True, args=["-vvv"])
    result = applied.task("write")["result"]
    assert applied.task("write")["changed"] is True
    expected = EXISTING.replace("AKIAOLDKEY0000000001", KEY_ID).replace(OLD_SECRET, SECRET)
    after = snapshot(creds)
    assert after["bytes"] == expected.encode()
    assert (after["mode"], after["uid"], after["gid"]) == (0o600, 0, 0)

    backup = Path(result["backup_file"])
    assert backup.parent == tmp_path and backup.name.startswith("credentials.")
    kept = snapshot(backup)
    assert kept["bytes"] == original["bytes"] and kept["mtime"] == original["mtime"]
    assert (kept["mode"], kept["uid"], kept["gid"]) == (0o600, 0, 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["credentials", backup.name])

    # the diff, as Ansible printed it: every secret masked (also the other profile's, which Ansible
    # itself knows nothing about), key ids shown, the mode change listed
    for shown in ("-aws_access_key_id=AKIAOLDKEY0000000001", f"+aws_access_key_id={KEY_ID}",
                  "aws_secret_access_key = ********", "aws_secret_access_key=********",
                  '-    "mode": "0644"', '+    "mode": "0600"'):
        assert shown in applied.stdout
    assert_no_secret(checked, SECRET, OLD_SECRET, OTHER_SECRET)
    assert_no_secret(applied, SECRET, OLD_SECRET, OTHER_SECRET)

    again = run([dict(task, check_mode=True), dict(task, name="apply again")], diff=True)
    assert again.task("write")["changed"] is False
    assert again.task("apply again")["changed"] is False
    assert "backup_file" not in again.task("apply again")["result"]
    assert snapshot(creds) == after
    assert len(list(tmp_path.iterdir())) == 2


def test_owner_group_and_mode_change_alone_is_a_change(tmp_path):
    creds = tmp_path / "credentials"
    run([write_task(path=str(creds))])
    before = snapshot(creds)
    assert (before["uid"], before["gid"]) == (0, 0)
    task = write_task(path=str(creds), owner="nobody", group="nogroup", mode="u=r,g=r,o=", backup=True)

    checked = run([task], check=True, diff=True)
    assert checked.task("write")["changed"] is True
    assert snapshot(creds) == before
    for shown in ('-    "owner": "root"', '+    "owner": "nobody"', '-    "group": "root"',
                  '+    "group": "nogroup"', '-    "mode": "0600"', '+    "mode": "0440"'):
        assert shown in checked.stdout

    applied = run([task])
    assert applied.task("write")["changed"] is True
    assert "backup_file" not in applied.task("write")["result"]
    after = snapshot(creds)
    assert (after["uid"], after["gid"], after["mode"]) == (NOBODY, NOGROUP, 0o440)
    assert (after["bytes"], after["inode"]) == (before["bytes"], before["inode"])

    again = run([dict(task, check_mode=True), dict(task, name="apply again")])
    assert [again.task(n)["changed"] for n in ("write", "apply again")] == [False, False]
    assert snapshot(creds) == after
    assert sorted(p.name for p in tmp_path.iterdir()) == ["credentials"]


def test_new_key_for_a_file_owned_by_the_app_keeps_its_owner(tmp_path):
    creds = tmp_path / "credentials"
    creds.write_text(EXISTING)
    os.chown(creds, NOBODY, NOGROUP)
    creds.chmod(0o600)
    run([write_task(path=str(creds))])
    after = snapshot(creds)
    assert (after["uid"], after["gid"], after["mode"]) == (NOBODY, NOGROUP, 0o600)
    assert after["bytes"] == EXISTING.replace("AKIAOLDKEY0000000001", KEY_ID).replace(OLD_SECRET, SECRET).encode()


def test_state_absent_removes_only_that_profile(tmp_path):
    creds = tmp_path / "credentials"
    creds.write_text(EXISTING)
    creds.chmod(0o600)
    original = snapshot(creds)
    task = {"name": "remove", "rekey.aws.credentials_file": {"path": str(creds), "state": "absent"}}

    checked = run([task], check=True, diff=True)
    assert checked.task("remove")["changed"] is True
    assert snapshot(creds) == original
    assert "-aws_secret_access_key=********" in checked.stdout

    applied = run([task])
    assert applied.task("remove")["changed"] is True
    assert applied.task("remove")["result"]["access_key_id"] is None
    after = snapshot(creds)
    assert after["bytes"] == (f"# Credentials for the demo host. Edit with care.\n\n[other]\n"
                              f"aws_access_key_id = AKIAOTHERPROFILE0001\n"
                              f"aws_secret_access_key = {OTHER_SECRET}\n").encode()
    assert after["mode"] == 0o600

    missing = tmp_path / "missing"
    again = run([dict(task, check_mode=True), dict(task, name="remove again"),
                 {"name": "remove from a missing file",
                  "rekey.aws.credentials_file": {"path": str(missing), "state": "absent"}}])
    assert [again.task(n)["changed"] for n in ("remove", "remove again", "remove from a missing file")] == [
        False, False, False]
    assert snapshot(creds) == after
    assert not missing.exists()


def test_session_token_is_written_then_removed_when_omitted(tmp_path):
    creds = tmp_path / "credentials"
    token = "FwoGZXIvYXdzEBYaDH" + "x" * 200
    with_token = run([write_task(path=str(creds), session_token=token)], diff=True)
    assert creds.read_text().endswith(f"aws_session_token = {token}\n")
    assert_no_secret(with_token, SECRET, token)
    run([write_task(path=str(creds))])
    assert creds.read_text() == f"[default]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"


@pytest.fixture
def readonly_dir():
    """A directory holding a credentials file, bind-mounted read-only (chmod is no barrier to root)."""
    base = Path(tempfile.mkdtemp(prefix="rekey-ro-"))
    (base / "credentials").write_text(EXISTING)
    (base / "credentials").chmod(0o600)
    mounted = subprocess.run(["mount", "--bind", str(base), str(base)], capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        shutil.rmtree(base)
        pytest.skip(f"cannot bind-mount here (needs root and mount rights): {mounted.stderr.strip()}")
    try:
        remount = subprocess.run(["mount", "-o", "remount,bind,ro", str(base)], capture_output=True, text=True, check=False)
        if remount.returncode != 0:
            pytest.skip(f"cannot remount read-only: {remount.stderr.strip()}")
        yield base
    finally:
        subprocess.run(["umount", str(base)], check=True)
        shutil.rmtree(base)


def test_read_only_filesystem_is_a_clear_error_and_the_file_is_untouched(readonly_dir):
    creds = readonly_dir / "credentials"
    before = snapshot(creds)
    result = run_playbook(local_play([
        dict(write_task("write", path=str(creds)), ignore_errors=True),
        dict(write_task("write with backup", path=str(creds), backup=True), ignore_errors=True),
        dict(write_task("check mode", path=str(creds)), check_mode=True),
    ]))
    assert result.rc == 0, result.stdout + result.stderr
    assert result.task("write")["status"] == "ignored"
    assert result.task("write")["result"]["msg"] == (
        f"cannot write {creds}: creating a temporary file in {readonly_dir} failed: "
        "Read-only file system; the file was left unchanged")
    assert result.task("write with backup")["result"]["msg"].startswith(f"cannot back up {creds} to {creds}.")
    assert result.task("write with backup")["result"]["msg"].endswith(
        "Read-only file system; the file was left unchanged")
    assert result.task("check mode")["changed"] is True
    assert snapshot(creds) == before
    assert sorted(p.name for p in readonly_dir.iterdir()) == ["credentials"]
    assert_no_secret(result, SECRET, OLD_SECRET, OTHER_SECRET)


def test_immutable_file_is_a_clear_error_and_left_untouched(tmp_path):
    creds = tmp_path / "credentials"
    creds.write_text(EXISTING)
    creds.chmod(0o600)
    locked = subprocess.run(["chattr", "+i", str(creds)], capture_output=True, text=True, check=False)
    if locked.returncode != 0:
        pytest.skip(f"chattr +i is not supported here: {locked.stderr.strip()}")
    try:
        before = snapshot(creds)
        result = run_playbook(local_play([dict(write_task(path=str(creds), backup=True), ignore_errors=True)]))
        assert result.task("write")["status"] == "ignored"
        assert result.task("write")["result"]["msg"] == (
            f"cannot write {creds}: Operation not permitted; the file was left unchanged")
        assert snapshot(creds) == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["credentials"]  # temp and backup gone
    finally:
        subprocess.run(["chattr", "-i", str(creds)], check=True)


def test_an_unprivileged_module_user_gets_clear_errors_and_files_stay_untouched():
    """Root reads and chowns everything, so the module runs as nobody through become (su)."""
    base = Path(tempfile.mkdtemp(prefix="rekey-unprivileged-"))
    try:
        base.chmod(0o755)
        os.chown(base, NOBODY, NOGROUP)  # nobody may create files here, so only the file decides
        unreadable = base / "unreadable"
        unreadable.write_text(EXISTING)
        unreadable.chmod(0o600)
        foreign = base / "foreign"  # readable, but owned by root: nobody cannot keep that owner
        foreign.write_text(EXISTING.replace(OLD_SECRET, "not-a-secret"))
        foreign.chmod(0o644)
        before = {path: snapshot(path) for path in (unreadable, foreign)}
        become = {"become": True, "become_user": "nobody", "become_method": "ansible.builtin.su",
                  "become_flags": "-s /bin/sh", "ignore_errors": True}
        result = run_playbook(local_play([dict(write_task("unreadable", path=str(unreadable)), **become),
                                          dict(write_task("foreign", path=str(foreign)), **become)]),
                              env={"ANSIBLE_PIPELINING": "1", "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3"})
        assert result.task("unreadable")["status"] == "ignored", result.stdout + result.stderr
        assert result.task("unreadable")["result"]["msg"] == f"cannot read {unreadable}: Permission denied"
        assert result.task("foreign")["status"] == "ignored"
        assert result.task("foreign")["result"]["msg"] == (
            f"cannot write {foreign} with owner uid 0 and group gid 0 as uid {NOBODY}: Operation not "
            "permitted; run with become, or set owner and group; the file was left unchanged")
        assert {path: snapshot(path) for path in (unreadable, foreign)} == before
        assert sorted(p.name for p in base.iterdir()) == ["foreign", "unreadable"]
        assert_no_secret(result, SECRET, OLD_SECRET, OTHER_SECRET)
    finally:
        shutil.rmtree(base)
