# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# The work is done on the controller by the action plugin of the same name
# (plugins/action/key_store.py): the secret never travels to a managed host.

DOCUMENTATION = r"""
module: key_store
short_description: Keep a new IAM access key in a durable store on the controller side
version_added: 0.1.0
description:
  - Writes an IAM user's access key (id and secret) to a durable store the moment IAM returns it,
    so a rotation that crashes later can still retrieve it, and later plays read it at use time
    with the P(rekey.aws.stored_key#lookup) lookup instead of carrying it in a fact.
  - Three backends. V(vault_file) is a file on the controller, encrypted with Ansible Vault using
    a vault secret the playbook run already has (C(--vault-password-file) or C(--vault-id)),
    written atomically with mode C(0600). V(secretsmanager) is an AWS Secrets Manager secret.
    V(ssm) is an AWS Systems Manager Parameter Store parameter of type C(SecureString).
  - V(secretsmanager) and V(ssm) outlive the controller (an AWX/Tower job's container is thrown
    away after the job; a file under it is lost with it).
  - All hold the JSON record C({"user_name", "access_key_id", "secret_access_key", "stored_at"}).
  - Always runs on the controller, whatever host the task targets, and makes no connection to it.
  - When the store already holds this exact key, nothing is written.
  - When the store holds another user's key (two users given one location), or cannot be read
    with this run's vault secrets, the task fails and leaves it as it is.
author:
  - rekey.aws contributors (@rekey)
options:
  user_name:
    description:
      - The IAM user whose key is stored.
    type: str
    required: true
  access_key_id:
    description:
      - The access key ID to store.
      - Required when O(state=present).
      - With O(state=absent), the store is removed only when it holds this key id.
    type: str
  secret_access_key:
    description:
      - The secret access key that goes with O(access_key_id).
      - Required when O(state=present).
    type: str
  state:
    description:
      - V(present) makes the store hold this key; V(absent) removes the store.
      - With the V(secretsmanager) backend, V(absent) schedules the secret for deletion with a
        7 day recovery window (never C(ForceDeleteWithoutRecovery)); a later V(present) restores it.
      - With the V(ssm) backend, V(absent) deletes the parameter. Parameter Store has no recovery
        window, so the parameter is gone at once. With O(access_key_id), it is deleted only when it
        holds that key.
    type: str
    choices: [present, absent]
    default: present
  backend:
    description:
      - Where the key is kept.
    type: str
    choices: [vault_file, secretsmanager, ssm]
    default: vault_file
  path:
    description:
      - V(vault_file) backend, required there. The file on the controller that holds the key.
      - C({user_name}) in the path is replaced by O(user_name).
      - A relative path is relative to the playbook directory. Missing parent directories are
        created with mode C(0700).
    type: path
  vault_id:
    description:
      - V(vault_file) backend. Which of the run's vault secrets encrypts the file, by vault id.
      - By default the first vault secret given to the run.
    type: str
  secret_name:
    description:
      - V(secretsmanager) backend. The name of the secret.
      - C({user_name}) in the name is replaced by O(user_name).
      - Default is V(rekey/<user_name>).
    type: str
  parameter_name:
    description:
      - V(ssm) backend. The name of the SecureString parameter.
      - C({user_name}) in the name is replaced by O(user_name). A name with levels starts with
        C(/); names under C(aws) or C(ssm) are reserved by AWS.
      - Default is V(/rekey/<user_name>).
    type: str
  kms_key_id:
    description:
      - V(secretsmanager) backend. The KMS key that encrypts the secret when it is created
        (an existing secret keeps its key). By default the account's C(aws/secretsmanager) key.
      - V(ssm) backend. The KMS key that encrypts the SecureString each time it is written. By
        default the account's C(aws/ssm) key.
    type: str
notes:
  - The connection options only matter for the V(secretsmanager) and V(ssm) backends. Environment variables
    are read from the controller's environment; the task's C(environment) keyword does not apply.
  - The V(secretsmanager) backend needs C(secretsmanager:DescribeSecret), C(GetSecretValue),
    C(CreateSecret), C(PutSecretValue), C(RestoreSecret) and C(DeleteSecret) on the secret.
  - The V(ssm) backend needs C(ssm:GetParameter), C(PutParameter) and C(DeleteParameter) on the
    parameter, and with a customer managed O(kms_key_id) C(kms:Encrypt) and C(kms:Decrypt) on it.
requirements:
  - boto3 and botocore on the controller, for the V(secretsmanager) and V(ssm) backends.
seealso:
  - plugin: rekey.aws.stored_key
    plugin_type: lookup
  - module: rekey.aws.access_key
extends_documentation_fragment:
  - rekey.aws._connection
  - rekey.aws._attributes
  - rekey.aws._attributes.actiongroup_aws
attributes:
  action:
    description: Runs as an action plugin on the controller.
    support: full
  check_mode:
    support: full
    details:
      - Reads the store and reports whether it would change; writes nothing.
  diff_mode:
    support: full
    details:
      - Before and after show the stored access key id only, never the secret.
  idempotent:
    support: full
"""

EXAMPLES = r"""
- name: Store the new key at once, encrypted with the run's vault secret
  rekey.aws.key_store:
    user_name: "{{ item.user_name }}"
    access_key_id: "{{ item.access_key.access_key_id }}"
    secret_access_key: "{{ item.secret_access_key }}"
    path: "{{ playbook_dir }}/keys/{user_name}.vault"
  loop: "{{ created_keys }}"
  no_log: true

- name: Store it in AWS Secrets Manager instead
  rekey.aws.key_store:
    user_name: demo-app
    access_key_id: "{{ new_key.access_key.access_key_id }}"
    secret_access_key: "{{ new_key.secret_access_key }}"
    backend: secretsmanager
    secret_name: rekey/{user_name}
  no_log: true

- name: Or in a Parameter Store SecureString, encrypted with a customer managed KMS key
  rekey.aws.key_store:
    user_name: demo-app
    access_key_id: "{{ new_key.access_key.access_key_id }}"
    secret_access_key: "{{ new_key.secret_access_key }}"
    backend: ssm
    parameter_name: /rekey/{user_name}
    kms_key_id: alias/rekey
  no_log: true

- name: Remove the stored key once no host needs it (only if it still holds this key)
  rekey.aws.key_store:
    user_name: demo-app
    access_key_id: "{{ unused_key_id }}"
    state: absent
    path: "{{ playbook_dir }}/keys/{user_name}.vault"
"""

RETURN = r"""
location:
  description:
    - Where the key is stored. The file's absolute path, the secret's ARN, or the parameter's name.
    - null when nothing exists there (O(state=absent) on a missing store, or a secret that check
      mode would create).
  returned: always
  type: str
  sample: arn:aws:secretsmanager:us-east-1:123456789012:secret:rekey/demo-app-AbCdEf
access_key_id:
  description:
    - With O(state=present), the key id the store holds now.
    - With O(state=absent), the key id the store held (null when it was missing or not read).
  returned: always
  type: str
  sample: AKIAIOSFODNN7EXAMPLE
"""
