# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# The work is done on the controller by the action plugin of the same name
# (plugins/action/consumer_aws.py): the secret never travels to a managed host.

DOCUMENTATION = r"""
module: consumer_aws
short_description: Write or put back the keys of consumers held in SSM Parameter Store or Secrets Manager
version_added: 0.3.0
description:
  - For the consumers whose key is held in AWS rather than in a file (the role's C(rotate_consumers)
    formats V(ssm_parameter) and V(secretsmanager_secret)), used by the role's distribute and
    rollback.
  - Each parameter or secret is handled once, however many hosts' consumers name it. Its value is
    one JSON object with the key id and the secret in the consumers' C(access_key_id_field) and
    C(secret_access_key_field); a parameter is a SecureString (with the consumers' C(kms_key_id),
    or the AWS managed key).
  - With O(state=written), makes each parameter or secret of a user whose new key is being
    distributed hold that key, read from the store. One read each, and one write when it holds
    another key (a resumed run finds it written already). One that does not exist is a problem,
    and so are its hosts (RV(failed_hosts)) - the app reads it, so it must hold the key in use.
  - With O(state=restored), after a failed rollout, puts back the value from before the new key
    where a parameter or secret holds the new key - the parameter's previous version, the
    secret's C(AWSPREVIOUS) version - when that value holds the old key. It needs nothing the
    controller kept, so it also works after a crash. Where it does not hold the new key, one read.
  - Always runs on the controller, whatever host the task targets, and makes no connection to it.
  - The secret is never in the result or a diff; a value is only read for the key id in it.
author:
  - rekey.aws contributors (@rekey)
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
      - Reads each parameter or secret and reports what it would write or put back; writes nothing
        and reads no new secret from the store.
  diff_mode:
    support: full
    details:
      - Before and after show the key id each parameter or secret holds, never the secret.
  idempotent:
    support: full
    details:
      - A parameter or secret that already holds the new key (or, put back, no longer holds it) is
        not written.
options:
  consumers:
    description:
      - Consumers as the role's plan holds them in C(entries), each with C(host); those of other
        formats are left out.
    type: list
    elements: dict
    required: true
  users:
    description:
      - The plan's users by name, whose key ids (old, new) and phase each consumer takes. With
        O(state=written), only users whose new key is being distributed are written.
    type: dict
    required: true
  state:
    description: V(written) gives the new keys, V(restored) puts back the keys from before.
    type: str
    choices: [written, restored]
    default: written
  store:
    description:
      - With O(state=written), where the new keys are stored, the options of the
        P(rekey.aws.stored_key#lookup) lookup.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Write the new keys held in AWS, once per parameter or secret
  rekey.aws.consumer_aws:
    consumers: "{{ plan.entries }}"
    users: "{{ plan.users }}"
    store:
      backend: vault_file
      path: ~/.rekey-aws/keys/{user_name}.vault
  register: written

- name: Put them back after a failed rollout
  rekey.aws.consumer_aws:
    state: restored
    consumers: "{{ plan.entries }}"
    users: "{{ plan.users }}"
"""

RETURN = r"""
targets:
  description: Per parameter or secret, what was done.
  returned: always
  type: list
  elements: dict
  contains:
    format:
      description: V(ssm_parameter) or V(secretsmanager_secret).
      type: str
    name:
      description: The parameter name or the secret id.
      type: str
    iam_user:
      description: The IAM user whose key it holds.
      type: str
    hosts:
      description: The hosts whose consumers name it.
      type: list
      elements: str
    action:
      description:
        - V(write) (written, or would be in check mode), V(keep) (already as wanted), V(restore)
          (put back, or would be), V(none) (nothing done, see C(problem)).
      type: str
    changed:
      description: Whether it was written.
      type: bool
    key_before:
      description: The key id it held before (null when it held none that could be read).
      type: str
    key_after:
      description: The key id it holds now (in check mode, would hold).
      type: str
    problem:
      description: Why nothing could be done (null when all is well); names it, never a value.
      type: str
problems:
  description: Every C(problem) of RV(targets).
  returned: always
  type: list
  elements: str
failed_hosts:
  description: With O(state=written), per host the problems of the parameters and secrets it reads.
  returned: when state is written
  type: dict
unrestored_users:
  description: With O(state=restored), the users of what could not be put back (their new key is kept).
  returned: when state is restored
  type: list
  elements: str
"""
