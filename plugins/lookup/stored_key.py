# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r"""
name: stored_key
short_description: Read IAM access keys kept by rekey.aws.key_store
version_added: 0.1.0
description:
  - Returns the access key stored for each IAM user named in the terms, by
    M(rekey.aws.key_store), so a play can use the secret at the moment it writes it and never
    keep it in a fact.
  - Runs on the controller. Errors name the user and the location, never the content.
author:
  - rekey.aws contributors (@rekey)
options:
  _terms:
    description: IAM user names.
    type: list
    elements: str
    required: true
  backend:
    description: Where the keys are kept.
    type: str
    choices: [vault_file, secretsmanager, ssm]
    default: vault_file
  path:
    description:
      - V(vault_file) backend, required there. The Vault-encrypted file on the controller.
      - C({user_name}) in the path is replaced by each term; it must be there when there are
        several terms.
      - A relative path is relative to the playbook directory.
      - The run needs the vault secret the file was written with (C(--vault-password-file) or
        C(--vault-id)).
    type: str
  secret_name:
    description:
      - V(secretsmanager) backend. The name of the secret.
      - C({user_name}) in the name is replaced by each term; it must be there when there are
        several terms.
      - Default is V(rekey/{user_name}).
    type: str
  parameter_name:
    description:
      - V(ssm) backend. The name of the SecureString parameter.
      - C({user_name}) in the name is replaced by each term; it must be there when there are
        several terms.
      - Default is V(/rekey/{user_name}).
    type: str
notes:
  - With the V(secretsmanager) backend, each term costs one C(GetSecretValue) call, with the
    V(ssm) backend one C(GetParameter) call, every time the lookup is evaluated.
  - Connection options are read as lookup options; environment variables from the controller's
    environment.
requirements:
  - boto3 and botocore on the controller, for the V(secretsmanager) and V(ssm) backends.
seealso:
  - module: rekey.aws.key_store
extends_documentation_fragment:
  - rekey.aws._connection
"""

EXAMPLES = r"""
- name: Write the new key where the app reads it (the secret never becomes a fact)
  rekey.aws.credentials_file:
    path: /etc/demoapp/credentials
    access_key_id: "{{ stored.access_key_id }}"
    secret_access_key: "{{ stored.secret_access_key }}"
  vars:
    stored: "{{ lookup('rekey.aws.stored_key', 'demo-app', path=playbook_dir ~ '/keys/{user_name}.vault') }}"
  no_log: true

- name: Several users from Secrets Manager, one dict each
  ansible.builtin.set_fact:
    key_ids: "{{ query('rekey.aws.stored_key', 'app-a', 'app-b', backend='secretsmanager') | map(attribute='access_key_id') }}"
"""

RETURN = r"""
_raw:
  description: One dict per term, in the order of the terms.
  type: list
  elements: dict
  contains:
    user_name:
      description: The IAM user.
      type: str
    access_key_id:
      description: The stored access key id.
      type: str
    secret_access_key:
      description: The stored secret access key.
      type: str
"""

import os

from ansible.errors import AnsibleLookupError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.parsing.vault import AnsibleVaultError, is_encrypted
from ansible.plugins.lookup import LookupBase

from ansible_collections.rekey.aws.plugins.module_utils import _connection
from ansible_collections.rekey.aws.plugins.module_utils import _key_record as kr
from ansible_collections.rekey.aws.plugins.module_utils import _secretsmanager as sm
from ansible_collections.rekey.aws.plugins.module_utils import _ssm_store

RETURNED_FIELDS = ("user_name", "access_key_id", "secret_access_key")


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        users = self._users(terms)
        try:
            backend = self.get_option("backend")
            if backend == "vault_file":
                records = self._from_files(users)
            elif backend == "secretsmanager":
                records = self._from_secrets(users)
            else:
                records = self._from_parameters(users)
        except kr.KeyStoreError as exc:
            raise AnsibleLookupError(str(exc)) from None
        return [{name: record[name] for name in RETURNED_FIELDS} for record in records]

    @staticmethod
    def _users(terms):
        if not terms:
            raise AnsibleLookupError("rekey.aws.stored_key needs at least one IAM user name as a term")
        for term in terms:
            problem = kr.user_name_problem(term)
            if problem:
                raise AnsibleLookupError(problem)
        return list(terms)

    @staticmethod
    def _template(option, value, users):
        if len(users) > 1 and kr.USER_NAME_PLACEHOLDER not in value:
            raise AnsibleLookupError("%s %r must contain {user_name} to look up several users (%s)"
                                     % (option, value, ", ".join(users)))
        return value

    # --- vault_file ---------------------------------------------------------------------------

    def _from_files(self, users):
        template = self.get_option("path")
        if not template:
            raise AnsibleLookupError("backend vault_file needs path: the file rekey.aws.key_store wrote")
        template = self._template("path", os.path.expandvars(os.path.expanduser(template)), users)
        return [self._from_file(self._loader.path_dwim(kr.expand_location(template, user)), user)
                for user in users]

    def _from_file(self, path, user):
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            raise kr.KeyStoreError("no stored key for IAM user %r: %s does not exist" % (user, path)) from None
        except OSError as exc:
            raise kr.KeyStoreError("cannot read the stored key of IAM user %r from %s: %s"
                                   % (user, path, exc.strerror or exc)) from None
        if not is_encrypted(data):
            raise kr.KeyStoreError("the stored key of IAM user %r: %s is not an Ansible Vault file" % (user, path))
        if not self._loader._vault.secrets:
            raise kr.KeyStoreError("the stored key of IAM user %r is in %s, encrypted with Ansible Vault: run with "
                                   "--vault-password-file or --vault-id" % (user, path))
        try:
            plaintext = self._loader._vault.decrypt(data)
        except AnsibleVaultError:
            raise kr.KeyStoreError("cannot decrypt the stored key of IAM user %r in %s with this run's vault "
                                   "secrets" % (user, path)) from None
        record = kr.parse_record(plaintext.decode("utf-8", errors="replace"), path)
        kr.check_owner(record, user, path)
        return record

    # --- secretsmanager -----------------------------------------------------------------------

    def _from_secrets(self, users):
        template = self._template("secret_name", self.get_option("secret_name") or "rekey/{user_name}", users)
        return self._from_aws(users, "secretsmanager", sm, template)

    # --- ssm ----------------------------------------------------------------------------------

    def _from_parameters(self, users):
        template = self._template("parameter_name", self.get_option("parameter_name")
                                  or _ssm_store.DEFAULT_PARAMETER_NAME, users)
        return self._from_aws(users, "ssm", _ssm_store, template)

    def _from_aws(self, users, service, backend, template):
        """One read_record call per user (_secretsmanager and _ssm_store: the same signature)."""
        if not _connection.HAS_BOTO3:
            raise AnsibleLookupError("backend %s needs boto3 and botocore in the controller's Python"
                                     % self.get_option("backend"))
        params = self._connection_params()
        client = _connection.client(_connection.admin_session(params), service, params, params["retries"])
        return [backend.read_record(client, kr.expand_location(template, user), user) for user in users]

    def _connection_params(self):
        """The connection options, with the modules' environment fallbacks and defaults.

        Only options set on the lookup are passed on, so that an environment variable wins over
        a documented default, exactly as in the modules.
        """
        spec = _connection.connection_argspec()
        given = {}
        for name in spec:
            value, origin = self.get_option_and_origin(name)
            if origin != "default" and value is not None:
                given[name] = value
        result = ArgumentSpecValidator(spec).validate(given)
        if result.error_messages:
            raise AnsibleLookupError("rekey.aws.stored_key: %s" % "; ".join(result.error_messages))
        params = result.validated_parameters
        problem = _connection.connection_problem(params)
        if problem:
            raise AnsibleLookupError(problem)
        return params
