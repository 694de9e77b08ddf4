# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

"""rekey.aws.key_store: every backend runs here, in the controller's process.

Secrets Manager and Parameter Store are called in-process through module_utils rather than by shipping the module
to localhost: a shipped module carries its arguments (the secret) in a file under the remote
temp dir, and the task would depend on localhost's interpreter having boto3. In-process, the
secret goes from memory to the Vault file or the TLS request and nowhere else.
"""

import os
import stat
import tempfile

from ansible.module_utils.common.parameters import remove_values
from ansible.parsing.vault import AnsibleVaultError, is_encrypted, match_encrypt_secret
from ansible.plugins.action import ActionBase

from ansible_collections.rekey.aws.plugins.module_utils import _connection
from ansible_collections.rekey.aws.plugins.module_utils import _key_record as kr
from ansible_collections.rekey.aws.plugins.module_utils import _keys
from ansible_collections.rekey.aws.plugins.module_utils import _secretsmanager as sm
from ansible_collections.rekey.aws.plugins.module_utils import _ssm_store

OPTIONS = {
    "user_name": {"type": "str", "required": True},
    "access_key_id": {"type": "str"},
    "secret_access_key": {"type": "str", "no_log": True},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "backend": {"type": "str", "choices": ["vault_file", "secretsmanager", "ssm"], "default": "vault_file"},
    "path": {"type": "path"},
    "vault_id": {"type": "str"},
    "secret_name": {"type": "str"},
    "parameter_name": {"type": "str"},
    "kms_key_id": {"type": "str"},
}
ARGUMENT_SPEC = _connection.connection_argspec(**OPTIONS)
REQUIRED_IF = [
    ("state", "present", ("access_key_id", "secret_access_key")),
    ("backend", "vault_file", ("path",)),
]

NO_VAULT_SECRET = ("backend vault_file needs a vault secret: run with --vault-password-file or --vault-id, "
                   "or use backend secretsmanager or ssm")
FILE_MODE = 0o600
DIR_MODE = 0o700


def validation_problem(args):
    """A message naming a bad option value, or None."""
    problem = kr.user_name_problem(args["user_name"])
    if problem is None and args.get("access_key_id") is not None:
        problem = _keys.key_id_problem(args["access_key_id"], "access_key_id")
    if problem is None and args.get("state") == "present" and not args.get("secret_access_key"):
        problem = "secret_access_key is empty: expected the secret that goes with access_key_id"
    return problem


def write_atomically(path, data):
    """Replace path with data: a 0600 temp file in the same directory, fsynced, then renamed."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), FILE_MODE)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp

        dummy, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC, required_if=REQUIRED_IF)
        secrets = {args[name] for name in ("secret_access_key", "secret_key", "session_token") if args.get(name)}
        try:
            problem = validation_problem(args)
            if problem:
                raise kr.KeyStoreError(problem)
            if args["backend"] == "vault_file":
                outcome = self._vault_file(args)
            elif args["backend"] == "secretsmanager":
                outcome = self._secretsmanager(args)
            else:
                outcome = self._ssm(args)
        except kr.KeyStoreError as exc:
            result.update(failed=True, msg=str(exc))
        else:
            before, after = outcome.pop("before"), outcome.pop("after")
            result.update(outcome)
            if self._task.diff:
                result["diff"] = {"before": {"access_key_id": before}, "after": {"access_key_id": after}}
        # Belt and braces: no code path above puts a secret in the result.
        return remove_values(result, secrets)

    # --- vault_file ---------------------------------------------------------------------------

    def _vault_file(self, args):
        user = args["user_name"]
        path = self._loader.path_dwim(kr.expand_location(args["path"], user))
        vault_id, vault_secret = self._encrypt_secret(args.get("vault_id"))
        record = self._read_file_record(path, user)
        held = record["access_key_id"] if record else None

        if args["state"] == "absent":
            wanted = args.get("access_key_id")
            if record is None or (wanted is not None and held != wanted):
                return {"changed": False, "location": path if record else None, "access_key_id": held,
                        "before": held, "after": held}
            if not self._task.check_mode:
                os.unlink(path)
            return {"changed": True, "location": path, "access_key_id": held, "before": held, "after": None}

        key_id, secret = args["access_key_id"], args["secret_access_key"]
        unchanged = record is not None and kr.same_key(record, user, key_id, secret)
        if unchanged and stat.S_IMODE(os.stat(path).st_mode) == FILE_MODE:
            return {"changed": False, "location": path, "access_key_id": key_id, "before": held, "after": key_id}
        if not self._task.check_mode:
            if unchanged:
                os.chmod(path, FILE_MODE)
            else:
                plaintext = kr.dump_record(kr.make_record(user, key_id, secret))
                data = self._loader._vault.encrypt(plaintext, secret=vault_secret, vault_id=vault_id)
                try:
                    write_atomically(path, data)
                except OSError as exc:
                    raise kr.KeyStoreError("cannot write %s: %s" % (path, exc.strerror or exc)) from None
        return {"changed": True, "location": path, "access_key_id": key_id, "before": held, "after": key_id}

    def _encrypt_secret(self, vault_id):
        """(vault id, secret) to encrypt with; fails before anything is read or written."""
        secrets = self._loader._vault.secrets
        if not secrets:
            raise kr.KeyStoreError(NO_VAULT_SECRET)
        if vault_id is None:
            return secrets[0]
        try:
            return match_encrypt_secret(secrets, encrypt_vault_id=vault_id)
        except AnsibleVaultError:
            raise kr.KeyStoreError("vault_id %r is not one of this run's vault ids: %s"
                                   % (vault_id, ", ".join(sorted({name for name, dummy in secrets})))) from None

    def _read_file_record(self, path, user):
        """The record in the file, None when there is no file; never overwrite what we cannot read."""
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise kr.KeyStoreError("cannot read %s: %s" % (path, exc.strerror or exc)) from None
        if not is_encrypted(data):
            raise kr.KeyStoreError("%s exists and is not an Ansible Vault file: remove it or choose another path"
                                   % path)
        try:
            plaintext = self._loader._vault.decrypt(data)
        except AnsibleVaultError:
            raise kr.KeyStoreError("cannot decrypt %s with this run's vault secrets: run with the vault secret "
                                   "it was written with, or remove it" % path) from None
        record = kr.parse_record(plaintext.decode("utf-8", errors="replace"), path)
        kr.check_owner(record, user, path)
        return record

    # --- secretsmanager -----------------------------------------------------------------------

    def _secretsmanager(self, args):
        user = args["user_name"]
        name = kr.expand_location(args.get("secret_name") or sm.default_secret_name(user), user)
        return self._aws_store(args, "secretsmanager", sm, name)

    # --- ssm ----------------------------------------------------------------------------------

    def _ssm(self, args):
        user = args["user_name"]
        name = kr.expand_location(args.get("parameter_name") or _ssm_store.DEFAULT_PARAMETER_NAME, user)
        return self._aws_store(args, "ssm", _ssm_store, name)

    def _aws_store(self, args, service, backend, name):
        """store/remove of an AWS backend (_secretsmanager, _ssm_store: the same signatures)."""
        if not _connection.HAS_BOTO3:
            raise kr.KeyStoreError("backend %s needs boto3 and botocore in the controller's Python" % args["backend"])
        problem = _connection.connection_problem(args)
        if problem:
            raise kr.KeyStoreError(problem)
        user = args["user_name"]
        client = _connection.client(_connection.admin_session(args), service, args, args["retries"])
        check_mode = self._task.check_mode

        if args["state"] == "absent":
            changed, location, held = backend.remove(client, name, user, args.get("access_key_id"),
                                                     check_mode=check_mode)
            return {"changed": changed, "location": location, "access_key_id": held,
                    "before": held, "after": None if changed else held}

        key_id = args["access_key_id"]
        changed, location, held = backend.store(client, name, user, key_id, args["secret_access_key"],
                                                kms_key_id=args.get("kms_key_id"), check_mode=check_mode)
        return {"changed": changed, "location": location, "access_key_id": key_id, "before": held, "after": key_id}
