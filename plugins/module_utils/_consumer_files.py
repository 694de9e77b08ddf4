# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# Internal to rekey.aws: not a public API, may change without notice.
"""The files of a host's consumers, as rekey.aws.consumer_files changes them: the new content of
each format, backups that are 0600 from their first byte, and every file replaced by one atomic
rename. Standard library only: this runs on target hosts, which have no boto3."""

import errno
import grp
import hashlib
import os
import pwd
import re
import tempfile

from ansible_collections.rekey.aws.plugins.module_utils._credentials_ini import CredentialsFileError, parse
from ansible_collections.rekey.aws.plugins.module_utils._env_file import EnvFileError, set_values

BACKUP_MODE = 0o600
BACKUP_DIR_MODE = 0o700


class FileProblem(Exception):
    """A file that could not be read, backed up, written or restored; the message names it and
    the cause, never its content."""


def new_content(consumer, old_text, key_id, secret, rendered):
    """The text a consumer's file holds once it has the key: its format applied to the current
    text (old_text, '' when the file is missing); rendered is the template's output."""
    fmt = consumer["format"]
    try:
        if fmt == "credentials":
            document = parse(old_text)
            document.set_values(consumer["profile"], [
                ("aws_access_key_id", key_id), ("aws_secret_access_key", secret),
                ("aws_session_token", None), ("aws_security_token", None)])
            return document.render()
        if fmt == "env":
            names = consumer["env_names"]
            return set_values(old_text, [(names["access_key_id"], key_id), (names["secret_access_key"], secret)])
    except (CredentialsFileError, EnvFileError) as error:
        raise FileProblem("%s: %s" % (consumer["path"], error))
    if fmt == "template":
        return rendered
    raise FileProblem("%s: format %r is not one of credentials, env, template" % (consumer["path"], fmt))


def ids(owner, group):
    """(uid, gid) of owner and group names (None when not given)."""
    try:
        uid = pwd.getpwnam(owner).pw_uid if owner else None
    except KeyError:
        raise FileProblem("owner %r is not a user on this host" % owner)
    try:
        gid = grp.getgrnam(group).gr_gid if group else None
    except KeyError:
        raise FileProblem("group %r is not a group on this host" % group)
    return uid, gid


def read(path):
    """The bytes of a file, or None when it does not exist."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except IOError as error:
        if error.errno == errno.ENOENT:
            return None
        raise FileProblem("cannot read %s: %s" % (path, error.strerror))


def digest(path):
    data = read(path)
    return None if data is None else hashlib.sha256(data).hexdigest()


def write_all(fd, data):
    """Write all of data to fd and flush it to disk."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.fsync(fd)


def fsync_directory(directory):
    """Flush a directory's entries to disk (after a rename in it), where the file system can."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the rename itself is done
    finally:
        os.close(fd)


def remove(path):
    """Remove a file; True when it existed."""
    try:
        os.unlink(path)
        return True
    except OSError as error:
        if error.errno == errno.ENOENT:
            return False
        raise FileProblem("cannot remove %s: %s" % (path, error.strerror))


def write_atomically(path, data, mode, uid, gid):
    """Replace path with data: a temporary file in the same directory that has the final owner
    and mode before its first byte, flushed, then renamed over path (a symbolic link is followed).
    Readers see the old file or the new one, never a mix."""
    real = os.path.realpath(path)
    directory = os.path.dirname(real)
    try:
        fd, temp = tempfile.mkstemp(prefix=".%s." % os.path.basename(real), suffix=".tmp", dir=directory)
    except OSError as error:
        raise FileProblem("cannot write %s: creating a temporary file in %s failed: %s"
                          % (path, directory, error.strerror))
    try:
        try:
            if uid is not None or gid is not None:
                os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
            os.fchmod(fd, mode)  # after chown, which may clear set-id bits
            write_all(fd, data)
        finally:
            os.close(fd)
        os.rename(temp, real)
    except OSError as error:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise FileProblem("cannot write %s: %s" % (path, error.strerror))
    fsync_directory(directory)


def make_backup_dir(directory):
    """The backup directory, made 0700 when missing; an existing one is made 0700 too (it holds
    this collection's backups, which hold secrets)."""
    try:
        os.makedirs(directory, BACKUP_DIR_MODE)
    except OSError as error:
        if error.errno != errno.EEXIST:
            raise FileProblem("cannot make the backup directory %s: %s" % (directory, error.strerror))
    try:
        os.chmod(directory, BACKUP_DIR_MODE)
    except OSError as error:
        raise FileProblem("cannot make the backup directory %s mode 0700: %s" % (directory, error.strerror))


def back_up(data, backup, uid=-1, gid=-1):
    """Write data to a new backup file that is 0600 from its creation (never an existing file),
    owned like the file it copies (uid, gid)."""
    try:
        fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), BACKUP_MODE)
    except OSError as error:
        raise FileProblem("cannot back up to %s: %s" % (backup, error.strerror))
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, BACKUP_MODE)  # after chown, which may clear bits; the umask may have narrowed it
        write_all(fd, data)
    except OSError as error:
        os.close(fd)
        remove(backup)
        raise FileProblem("cannot back up to %s: %s" % (backup, error.strerror))
    os.close(fd)


def earlier_backups(consumer):
    """Backups of this consumer (same host and name) that earlier runs left in the backup
    directory, oldest first: runs killed before their finish could not remove them."""
    directory, own = os.path.split(consumer["backup"])
    pattern = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9]+-%s-%s\.bak$"
                         % (re.escape(consumer["host"]), re.escape(consumer["name"])))
    try:
        names = os.listdir(directory)
    except OSError as error:
        if error.errno == errno.ENOENT:
            return []
        raise FileProblem("cannot list the backup directory %s: %s" % (directory, error.strerror))
    return [os.path.join(directory, n) for n in sorted(names) if n != own and pattern.match(n)]


def backup_of_run(backups, run_id):
    """The backup among these that run run_id made, or None."""
    if not run_id:
        return None
    for path in backups:
        if os.path.basename(path).startswith(run_id + "-"):
            return path
    return None
