# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# The work is done on the controller by the action plugin of the same name
# (plugins/action/rotation_plan.py): it decides, and calls no AWS API.

DOCUMENTATION = r"""
module: rotation_plan
short_description: Check a rotation's inputs and plan it, before any write
version_added: 0.2.0
description:
  - Used by the role's prepare phase, on the controller. Calls no AWS API and writes nothing.
  - With O(step=check), checks the role variables and every consumer of every host in
    O(hosts) (each problem names the bad value and what was expected), and starts the run.
  - With O(step=plan), decides from what the IAM reads returned, for every selected user, which key
    is old, whether to rotate it, retire a named key or do nothing, which unused Inactive key to
    delete to free the second slot, how a rotation an earlier run left unfinished goes on, and which
    hosts receive a new key. It fails, before any write, when the plan has problems, when
    C(--limit) leaves out a host that must receive a new key, when another run holds the lock of a
    user whose named key is to be retired, or when the vault file store has no vault secret.
author:
  - rekey.aws contributors (@rekey)
extends_documentation_fragment:
  - rekey.aws._attributes
  - rekey.aws._attributes.INFO_MODULE
options:
  step:
    description: V(check) or V(plan), see the description.
    type: str
    choices: [check, plan]
    required: true
  settings:
    description: The role's C(rotate_*) variables by name.
    type: dict
    required: true
  hosts:
    description: The hosts C(rotate_hosts) matches.
    type: list
    elements: str
    required: true
  consumers_option:
    description: With O(step=check), the C(rotate_consumers) option of the role's argument specs.
    type: dict
  target_group_hosts:
    description: With O(step=check), the hosts already in C(rotate_target_group) (it must be empty).
    type: list
    elements: str
    default: []
  run:
    description: With O(step=plan), the run O(step=check) started.
    type: dict
  recorded:
    description: With O(step=plan), the C(rotations) M(rekey.aws.rotation_state_info) returned.
    type: dict
    default: {}
  keys:
    description: With O(step=plan), the C(access_keys) M(rekey.aws.access_key_info) returned.
    type: list
    elements: dict
    default: []
  store_checks:
    description:
      - With O(step=plan), the results of asking M(rekey.aws.key_store) whether it holds the new key
        a killed run created.
    type: list
    elements: dict
    default: []
  limit_hosts:
    description: With O(step=plan), the hosts C(--limit) matches; omitted without C(--limit).
    type: list
    elements: str
"""

EXAMPLES = r"""
- name: Check the variables and every consumer
  rekey.aws.rotation_plan:
    step: check
    settings: "{{ my_settings }}"
    hosts: "{{ query('ansible.builtin.inventory_hostnames', 'all') }}"
    consumers_option: "{{ my_consumer_spec }}"
  register: checked
"""

RETURN = r"""
run:
  description: With O(step=check), the run (C(run_id), C(started_at), C(started_epoch), C(check_mode)).
  returned: when step is check
  type: dict
users:
  description: With O(step=check), the IAM users the run selects.
  returned: when step is check
  type: list
  elements: str
report_path:
  description: With O(step=check), where the run's report is written.
  returned: when step is check
  type: str
plan:
  description:
    - With O(step=plan), C(users) (the plan of each user), C(entries) (each consumer that holds a
      key of a user with work to do), C(targets) (the hosts that receive a new key) and C(errors).
  returned: when step is plan
  type: dict
todo:
  description:
    - With O(step=plan), what prepare writes, in order - C(locked), C(discards), C(done),
      C(recorded), C(prunes), C(creates) - and the lines that show the plan.
  returned: when step is plan
  type: dict
"""
