# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# The work is done on the controller by the action plugin of the same name
# (plugins/action/rotation_update.py): it decides, and calls no AWS API.

DOCUMENTATION = r"""
module: rotation_update
short_description: Fold what a step of a rotation did into its plan
version_added: 0.2.0
description:
  - Used by the role's prepare and finish phases, on the controller. Calls no AWS API and writes
    nothing.
  - Takes the plan and what one step returned, and returns the plan after that step and what the
    next steps do (RV(todo)), for O(event) V(prechecked) (refuses the run when a consumer's check
    before any write failed), V(created) (the new keys created and stored), V(recorded) (the new
    keys to delete, not stored or not recorded), V(discarded) (those keys deleted), V(verified) (the
    new keys authenticate and are being distributed; fails when the store holds other keys),
    V(gathered) (the outcome of every host of the rollout, read from its
    C(_rotate_host_rollout.outcome)), V(idle_checked) (old keys used after the cutover stay Active),
    V(deactivated), V(rechecked) (reactivate the old key of users with a failed re-check, read from
    each host's C(_rotate_recheck), delete the others), V(retired), V(retire_failing) and
    V(retire_failed) (an unexpected error while retiring), V(put_back) and V(rolled_back) (a failed
    rollout).
author:
  - rekey.aws contributors (@rekey)
extends_documentation_fragment:
  - rekey.aws._attributes
  - rekey.aws._attributes.INFO_MODULE
options:
  event:
    description: The step that ran, see the description.
    type: str
    choices: [prechecked, created, recorded, discarded, verified, gathered, idle_checked, deactivated, rechecked,
              retired, retire_failing, retire_failed, put_back, rolled_back]
    required: true
  plan:
    description: The plan, as M(rekey.aws.rotation_plan) or the previous event returned it.
    type: dict
    required: true
  verifying:
    description: With V(verified), the users whose new keys were verified.
    type: list
    elements: str
    default: []
  created:
    description: With V(created), the results of the loop that created the new keys, without their secrets.
    type: list
    elements: dict
    default: []
  stored:
    description: With V(created), the results of the loop that stored the new secrets (no secret in them).
    type: list
    elements: dict
    default: []
  todo:
    description: With V(recorded), the RV(todo) the V(created) event returned.
    type: dict
    default: {}
  users:
    description: With V(discarded), the users whose new keys were deleted.
    type: list
    elements: str
    default: []
  results:
    description: With V(verified), the C(results) of M(rekey.aws.access_key_verify).
    type: list
    elements: dict
    default: []
  prepare_failure:
    description: With V(gathered), why prepare failed (C(task), C(msg)), or empty.
    type: dict
    default: {}
  keys_after:
    description: With V(idle_checked), the C(access_keys) M(rekey.aws.access_key_info) read after the idle window.
    type: list
    elements: dict
    default: []
  retire:
    description: With V(rechecked), the role's C(rotate_retire) (V(delete) or V(deactivate)).
    type: str
    default: delete
  registered:
    description:
      - What the step registered - the record of the new keys with V(recorded), the reactivations with
        V(retire_failed), the hosts put back with V(put_back), the deleted new keys with V(rolled_back).
    type: dict
    default: {}
  held_in_aws:
    description:
      - With V(put_back), the users whose parameter or secret (consumers held in AWS) could not be
        put back, as M(rekey.aws.consumer_aws) returned them in C(unrestored_users); their new key is
        kept.
    type: list
    elements: str
    default: []
  settle_s:
    description:
      - With V(deactivated), how long IAM takes to propagate the deactivation (the role's
        C(rotate_deactivate_settle_s)); the plan's C(recheck_after) says when the re-checks may start.
    type: float
    default: 0
  failed_task:
    description: With V(retire_failed), the name of the task that failed.
    type: str
    default: ""
  failed_result:
    description: With V(retire_failed), its result.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Decide per user from the re-checks
  rekey.aws.rotation_update:
    event: rechecked
    plan: "{{ plan }}"
    retire: delete
  register: step
"""

RETURN = r"""
plan:
  description: The plan after the step (users, entries, targets, and once gathered the hosts' outcomes).
  returned: success
  type: dict
todo:
  description: What the next steps do, as lists of users with their key ids and the phase to record.
  returned: success
  type: dict
"""
