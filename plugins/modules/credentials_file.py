#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r"""
module: credentials_file
short_description: Manage one profile of an AWS shared credentials file
version_added: 0.1.0
description:
  - Sets or removes one profile (C([name]) section) of an AWS shared credentials file, such as
    C(~/.aws/credentials), on the target host.
  - Keeps every other profile, comments, blank lines, key order and line endings as they are,
    and changes only the lines it must.
  - Replaces the file atomically. The new content is written to a temporary file in the same
    directory that already has the final mode, owner and group, flushed to disk, then renamed
    over the file, so the secret is never in a file with a wider mode and readers never see a
    half-written file.
  - Uses the Python standard library only and makes no AWS call, so targets need no boto3.
  - Whenever the file exists after the task, its O(mode), and O(owner) and O(group) when given,
    are enforced, also with O(state=absent).
author:
  - rekey.aws contributors (@rekey)
extends_documentation_fragment:
  - rekey.aws._attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - The diff shows the file before and after, with the value of every
        C(aws_secret_access_key), C(aws_session_token) and C(aws_security_token) masked, in
        every profile. Key ids are shown.
  idempotent:
    support: full
options:
  path:
    description:
      - Absolute path of the credentials file on the target. C(~) is expanded.
      - The parent directory must exist. A symbolic link is followed and the file it points to
        is replaced; the link stays.
    type: path
    required: true
  profile:
    description:
      - Name of the profile, the section header without brackets.
      - Must not contain C(]), line breaks or surrounding spaces.
    type: str
    default: default
  access_key_id:
    description:
      - The access key id to write, 16 to 128 upper-case letters and digits.
      - Required when O(state=present).
    type: str
  secret_access_key:
    description:
      - The secret access key to write. Never shown in output, diffs or errors.
      - Required when O(state=present).
    type: str
  session_token:
    description:
      - The session token of temporary credentials.
      - When omitted with O(state=present), a stale C(aws_session_token) is removed from the
        profile, so that it does not pair with the new key.
      - A legacy C(aws_security_token) key is always removed with O(state=present), because
        botocore would prefer it over C(aws_session_token).
    type: str
  state:
    description:
      - V(present) sets the profile's keys, creating the file and the profile when needed.
      - V(absent) removes the profile's header, its keys and the comments inside it. The file
        is kept, even when empty; a missing file stays missing.
    type: str
    choices: [present, absent]
    default: present
  owner:
    description:
      - User name or numeric uid that should own the file.
      - When omitted, an existing file keeps its owner and a new one is owned by the user the
        module runs as.
    type: str
  group:
    description:
      - Group name or numeric gid of the file.
      - When omitted, an existing file keeps its group.
    type: str
  mode:
    description:
      - Permissions of the file, as a quoted octal string like V('0600') or a symbolic mode like
        V('u=rw,g=,o=').
      - A symbolic mode applies to the existing file's permissions, or to V('0000') for a new
        file.
      - An unquoted number is refused, because YAML reads C(0600) as the number 384.
    type: raw
    default: '0600'
  backup:
    description:
      - Before changing the content of an existing file, copy it to a timestamped file next to
        it (C(PATH.PID.YYYY-MM-DD@HH:MM:SS~)) with mode V('0600') or narrower, never wider than
        the original.
      - No backup is made when only the mode or ownership changes.
    type: bool
    default: false
notes:
  - The secret is a C(no_log) parameter. Register the result freely; it holds no secret.
seealso:
  - module: rekey.aws.access_key
  - name: AWS shared credentials and config files
    description: The file format this module edits.
    link: https://docs.aws.amazon.com/sdkref/latest/guide/file-format.html
"""

EXAMPLES = r"""
- name: Write the new key to the application's credentials file
  rekey.aws.credentials_file:
    path: /etc/demoapp/credentials
    profile: default
    access_key_id: "{{ new_key.access_key.access_key_id }}"
    secret_access_key: "{{ new_key.secret_access_key }}"
    owner: demoapp
    group: demoapp
    mode: "0600"
    backup: true
  register: written
  no_log: true  # the task's arguments carry the secret

- name: Restore the previous file if the health check fails
  ansible.builtin.copy:
    src: "{{ written.backup_file }}"
    dest: /etc/demoapp/credentials
    remote_src: true
    owner: demoapp
    group: demoapp
    mode: "0600"
  when: written.backup_file is defined

- name: Remove a profile that is no longer used
  rekey.aws.credentials_file:
    path: ~/.aws/credentials
    profile: old-account
    state: absent
"""

RETURN = r"""
access_key_id:
  description: The key id in the profile after the task, or C(null) when the profile is absent.
  returned: always
  type: str
  sample: AKIAIOSFODNN7EXAMPLE
backup_file:
  description: Path of the backup copy of the previous file.
  returned: when O(backup=true) and the content changed (never in check mode)
  type: str
  sample: /etc/demoapp/credentials.4242.2026-11-22@13:30:00~
"""

import errno
import grp
import os
import pwd
import re
import stat
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rekey.aws.plugins.module_utils._credentials_ini import (
    CredentialsFileError,
    check_profile,
    parse,
)
from ansible_collections.rekey.aws.plugins.module_utils._consumer_files import fsync_directory, write_all

KEY_ID_RE = re.compile(r"^[A-Z0-9]{16,128}$")
OCTAL_MODE_RE = re.compile(r"^[0-7]{3,4}$")


def _fail(message):
    raise CredentialsFileError(message)


def validate(params):
    check_profile(params["profile"])
    if params["state"] == "present":
        for name in ("access_key_id", "secret_access_key"):
            if params[name] is None:
                _fail("%s is required with state=present" % name)
        key_id = params["access_key_id"]
        if not KEY_ID_RE.match(key_id):
            _fail("access_key_id %r does not look like an AWS access key id: expected 16 to 128 "
                  "upper-case letters and digits, like AKIAIOSFODNN7EXAMPLE" % (key_id,))
        for name in ("secret_access_key", "session_token"):
            value = params[name]
            if value is None:
                continue
            if not value or value != value.strip() or any(ord(c) < 32 or ord(c) == 127 for c in value):
                _fail("%s must be a non-empty single line without surrounding spaces or control "
                      "characters (value not shown)" % name)
    mode = params["mode"]
    if mode is None:
        mode = "0600"
    if not isinstance(mode, str):
        _fail("mode must be a quoted string such as '0600' or 'u=rw,g=,o=', got the number %r "
              "(YAML reads an unquoted 0600 as 384; quote it)" % (mode,))
    if not OCTAL_MODE_RE.match(mode):
        try:
            AnsibleModule._symbolic_mode_to_octal(_fake_stat(0), mode)
        except Exception:
            _fail("mode %r is neither an octal mode like '0600' nor a symbolic mode like "
                  "'u=rw,g=,o='" % (mode,))
    return {
        "mode": mode,
        "uid": _resolve(params["owner"], "owner", pwd.getpwnam, "pw_uid", "user"),
        "gid": _resolve(params["group"], "group", grp.getgrnam, "gr_gid", "group"),
    }


def _resolve(name, option, lookup, attribute, kind):
    if name is None:
        return None
    if name.isdigit():
        return int(name)
    try:
        return getattr(lookup(name), attribute)
    except KeyError:
        _fail("%s %r is not a %s on this host: expected a %s name or a numeric id"
              % (option, name, kind, kind))


def _fake_stat(permissions):
    return os.stat_result((stat.S_IFREG | permissions, 0, 0, 0, 0, 0, 0, 0, 0, 0))


def desired_mode(mode, current_stat):
    if OCTAL_MODE_RE.match(mode):
        return int(mode, 8)
    base = current_stat if current_stat is not None else _fake_stat(0)
    return AnsibleModule._symbolic_mode_to_octal(base, mode)


def locate(path):
    """The real path to edit and its current stat (None when missing)."""
    if not os.path.isabs(path):
        _fail("path %r is relative; expected an absolute path (or one starting with ~)" % (path,))
    real = os.path.realpath(path)
    parent = os.path.dirname(real)
    try:
        is_directory = stat.S_ISDIR(os.stat(parent).st_mode)
    except OSError as error:
        if error.errno not in (errno.ENOENT, errno.ENOTDIR):
            _fail("cannot access directory %s of %s: %s" % (parent, path, error.strerror))
        is_directory = None
    if not is_directory:
        _fail("parent directory %s of %s %s; create it first (for example with "
              "ansible.builtin.file state=directory)"
              % (parent, path, "does not exist" if is_directory is None else "is not a directory"))
    try:
        current = os.stat(real)
    except OSError as error:
        if error.errno == errno.ENOENT:
            return real, None
        _fail("cannot inspect %s: %s" % (path, error.strerror))
    if stat.S_ISDIR(current.st_mode):
        _fail("%s is a directory; expected the path of a credentials file" % path)
    if not stat.S_ISREG(current.st_mode):
        _fail("%s is not a regular file; expected the path of a credentials file" % path)
    return real, current


def read_text(path, real):
    try:
        with open(real, "rb") as handle:
            data = handle.read()
    except (IOError, OSError) as error:
        _fail("cannot read %s: %s" % (path, error.strerror))
    try:
        return data, data.decode("utf-8")
    except UnicodeDecodeError:
        _fail("%s is not UTF-8 text; expected an AWS shared credentials file" % path)


def make_backup(module, path, real, data, current):
    backup = "%s.%s.%s" % (real, os.getpid(), time.strftime("%Y-%m-%d@%H:%M:%S~"))
    try:
        fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError as error:
        _fail("cannot back up %s to %s: %s; the file was left unchanged"
              % (path, backup, error.strerror))
    try:
        try:
            os.fchown(fd, current.st_uid, current.st_gid)
        except OSError as error:
            if error.errno != errno.EPERM:
                raise
        os.fchmod(fd, stat.S_IMODE(current.st_mode) & 0o600)
        write_all(fd, data)
    except OSError as error:
        os.close(fd)
        _remove(backup)
        _fail("cannot back up %s to %s: %s; the file was left unchanged"
              % (path, backup, error.strerror))
    os.close(fd)
    try:
        os.utime(backup, ns=(current.st_atime_ns, current.st_mtime_ns))
    except OSError:
        pass  # the timestamps are a courtesy; the copy itself is complete
    if module.selinux_enabled():
        module.set_context_if_different(backup, module.selinux_context(real), False)
    return backup


def write_atomic(module, path, real, data, mode, uid, gid, current):
    """Replace real with data; the temp file has the final mode and owner before any byte."""
    directory = os.path.dirname(real)
    try:
        fd, temp = tempfile.mkstemp(prefix=".%s." % os.path.basename(real), suffix=".tmp",
                                    dir=directory)
    except OSError as error:
        _fail("cannot write %s: creating a temporary file in %s failed: %s; the file was left "
              "unchanged" % (path, directory, error.strerror))
    try:
        try:
            temp_stat = os.fstat(fd)
            if (uid is not None and uid != temp_stat.st_uid) or (gid is not None and gid != temp_stat.st_gid):
                os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
            os.fchmod(fd, mode)  # after chown, which may clear set-id bits
            write_all(fd, data)
        finally:
            os.close(fd)
        if module.selinux_enabled():
            context = module.selinux_context(real) if current else module.selinux_default_context(real)
            module.set_context_if_different(temp, context, False)
        os.rename(temp, real)
    except OSError as error:
        _remove(temp)
        if error.errno == errno.EPERM and uid is not None and os.geteuid() != 0:
            _fail("cannot write %s with owner uid %s and group gid %s as uid %s: %s; run with "
                  "become, or set owner and group; the file was left unchanged"
                  % (path, uid, gid, os.geteuid(), error.strerror))
        _fail("cannot write %s: %s; the file was left unchanged" % (path, error.strerror))
    fsync_directory(directory)


def _remove(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _owner_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def attribute_diff(current, mode, uid, gid):
    """before/after of the mode, owner and group that would change ({} when none)."""
    before, after = {}, {}
    if current is None:
        return {}
    if stat.S_IMODE(current.st_mode) != mode:
        before["mode"], after["mode"] = "%04o" % stat.S_IMODE(current.st_mode), "%04o" % mode
    if uid is not None and current.st_uid != uid:
        before["owner"], after["owner"] = _owner_name(current.st_uid), _owner_name(uid)
    if gid is not None and current.st_gid != gid:
        before["group"], after["group"] = _group_name(current.st_gid), _group_name(gid)
    return {"before": before, "after": after} if before else {}


def run(module):
    params = module.params
    wanted = validate(params)
    path = params["path"]
    real, current = locate(path)
    data, text = read_text(path, real) if current is not None else (b"", "")
    document = parse(text)
    before = document.render(mask=True)

    if params["state"] == "present":
        document.set_values(params["profile"], [
            ("aws_access_key_id", params["access_key_id"]),
            ("aws_secret_access_key", params["secret_access_key"]),
            ("aws_session_token", params["session_token"]),
            ("aws_security_token", None),
        ])
    else:
        document.remove_profile(params["profile"])
    new_data = document.render().encode("utf-8")
    exists_after = current is not None or params["state"] == "present"
    content_changed = exists_after and (current is None or new_data != data)

    mode = desired_mode(wanted["mode"], current)
    uid = wanted["uid"] if wanted["uid"] is not None else (current.st_uid if current else None)
    gid = wanted["gid"] if wanted["gid"] is not None else (current.st_gid if current else None)
    if exists_after and mode & 0o007:
        module.warn("mode %04o lets every user on the host read the secret in %s" % (mode, path))

    result = {"changed": False, "access_key_id": document.get(params["profile"], "aws_access_key_id")}
    if content_changed:
        result["changed"] = True
        if not module.check_mode:
            backup = None
            if params["backup"] and current is not None:
                backup = make_backup(module, path, real, data, current)
            try:
                write_atomic(module, path, real, new_data, mode, uid, gid, current)
            except CredentialsFileError:
                if backup:
                    _remove(backup)
                raise
            if backup:
                result["backup_file"] = backup
    attributes = attribute_diff(current, mode, wanted["uid"], wanted["gid"])
    if exists_after and not (content_changed and module.check_mode):
        file_args = {"path": real, "mode": mode, "owner": wanted["uid"], "group": wanted["gid"],
                     "secontext": [None, None, None], "attributes": None}
        result["changed"] = module.set_fs_attributes_if_different(file_args, result["changed"],
                                                                  expand=False)

    if module._diff:
        diffs = [{"before": before, "after": document.render(mask=True) if exists_after else "",
                  "before_header": path, "after_header": path}]
        if attributes:
            attributes.update(before_header="%s (attributes)" % path,
                              after_header="%s (attributes)" % path)
            diffs.append(attributes)
        result["diff"] = diffs
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            profile=dict(type="str", default="default"),
            access_key_id=dict(type="str"),
            secret_access_key=dict(type="str", no_log=True),
            session_token=dict(type="str", no_log=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            owner=dict(type="str"),
            group=dict(type="str"),
            mode=dict(type="raw", default="0600"),
            backup=dict(type="bool", default=False),
        ),
        required_if=[("state", "present", ("access_key_id", "secret_access_key"))],
        supports_check_mode=True,
    )
    try:
        result = run(module)
    except CredentialsFileError as error:
        module.fail_json(msg=str(error))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
