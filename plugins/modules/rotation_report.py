# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# The work is done on the controller by the action plugin of the same name
# (plugins/action/rotation_report.py).

DOCUMENTATION = r"""
module: rotation_report
short_description: Write a rotation's report and return its summary
version_added: 0.2.0
description:
  - Used by the role's finish phase (and a refused prepare), on the controller.
  - Writes the JSON report to O(path) (mode 0600, replaced atomically; its directory is made with
    mode 0700 when it is missing, and an existing one is left as it is) and returns the human
    summary and the C(set_stats) data. Nothing is written in check mode.
  - The report holds key ids, hosts, checks and times, never a secret.
author:
  - rekey.aws contributors (@rekey)
extends_documentation_fragment:
  - rekey.aws._attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - Each run writes its own report; it records the run and changes nothing that is managed.
options:
  plan:
    description: The plan at the end of the run.
    type: dict
    required: true
  run:
    description: The run (C(run_id), C(started_at), C(started_epoch) and the epochs it reached).
    type: dict
    required: true
  path:
    description: Where the JSON report is written, an absolute path on the controller.
    type: str
    required: true
  prepare_failure:
    description: Why prepare failed or refused the run (C(task), C(msg), C(refused)), or empty.
    type: dict
    default: {}
  finish_failure:
    description: An unexpected failure of finish (C(task), C(msg)), or empty.
    type: dict
    default: {}
  retire:
    description: The role's C(rotate_retire).
    type: str
    default: delete
  lock_users:
    description: The users this run locked.
    type: list
    elements: str
    default: []
  released:
    description: Whether the run released its lock.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Write the report
  rekey.aws.rotation_report:
    plan: "{{ plan }}"
    run: "{{ run }}"
    path: /var/log/rekey/rotate.json
  register: report
"""

RETURN = r"""
report:
  description: The report as written (run, ok, message, durations, users, hosts, resumed, lock).
  returned: always
  type: dict
summary:
  description: The human summary, one line per item.
  returned: success
  type: list
  elements: str
stats:
  description: The C(rekey_rotate) data for C(set_stats) (run_id, ok, report path, and per user the result and key ids).
  returned: success
  type: dict
"""
