# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# The work is done on the controller by the action plugin of the same name
# (plugins/action/key_audit.py): it decides, and calls no AWS API.

DOCUMENTATION = r"""
module: key_audit
short_description: Say which access keys are due and which hosts hold them
version_added: 0.2.0
description:
  - Used by the playbook C(rekey.aws.audit), on the controller. Calls no AWS API and writes nothing.
  - Takes the keys M(rekey.aws.access_key_info) read and returns each with C(due) (Active and at
    least O(max_age_days) old) and C(held_by) (the hosts among O(hosts) with a consumer of its
    user's key, from their C(rotate_consumers)), and one line per key to show.
author:
  - rekey.aws contributors (@rekey)
extends_documentation_fragment:
  - rekey.aws._attributes
  - rekey.aws._attributes.INFO_MODULE
options:
  keys:
    description: The C(access_keys) M(rekey.aws.access_key_info) returned.
    type: list
    elements: dict
    required: true
  hosts:
    description: The hosts whose consumers are read.
    type: list
    elements: str
    default: []
  max_age_days:
    description: A key this many days old is due.
    type: int
    default: 90
"""

EXAMPLES = r"""
- name: Build the audit
  rekey.aws.key_audit:
    keys: "{{ read.access_keys }}"
    hosts: "{{ query('ansible.builtin.inventory_hostnames', 'all') }}"
    max_age_days: 90
  register: audit
"""

RETURN = r"""
audit:
  description: C(generated_at), C(max_age_days) and C(access_keys), each key with C(due) and C(held_by).
  returned: always
  type: dict
lines:
  description: One line per key (user, id, status, age, last use, DUE), or C(no access keys).
  returned: always
  type: list
  elements: str
"""
