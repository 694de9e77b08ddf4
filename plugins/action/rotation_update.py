# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

"""rekey.aws.rotation_update: fold what a step of the rotation did into the plan, on the
controller, and say what the next steps do. The decisions are module_utils/_progress's; this
reads the task's inputs and what the hosts' own plays left in their host variables (the checks
before any write, each host's outcome after the rollout, the re-checks without the old keys).
No AWS call, no write."""

import datetime

from ansible.plugins.action import ActionBase

from ansible_collections.rekey.aws.plugins.module_utils import _progress

EVENTS = ("prechecked", "created", "recorded", "discarded", "verified", "gathered", "idle_checked",
          "deactivated", "rechecked", "retired", "retire_failing", "retire_failed", "put_back", "rolled_back")
ARGUMENT_SPEC = {
    "event": {"type": "str", "choices": list(EVENTS), "required": True},
    "plan": {"type": "dict", "required": True},
    "verifying": {"type": "list", "elements": "str", "default": []},
    "created": {"type": "list", "elements": "dict", "default": []},
    "stored": {"type": "list", "elements": "dict", "default": []},
    "todo": {"type": "dict", "default": {}},
    "users": {"type": "list", "elements": "str", "default": []},
    "results": {"type": "list", "elements": "dict", "default": []},
    "prepare_failure": {"type": "dict", "default": {}},
    "keys_after": {"type": "list", "elements": "dict", "default": []},
    "retire": {"type": "str", "default": "delete"},
    "registered": {"type": "dict", "default": {}},
    "failed_task": {"type": "str", "default": ""},
    "failed_result": {"type": "dict", "default": {}},
    "held_in_aws": {"type": "list", "elements": "str", "default": []},
    "settle_s": {"type": "float", "default": 0},
}


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        dummy, a = self.validate_argument_spec(ARGUMENT_SPEC)
        plan, event = a["plan"], a["event"]
        now = datetime.datetime.now(datetime.timezone.utc)
        hostvars = task_vars["hostvars"]
        try:
            if event == "prechecked":
                plan, todo = _progress.prechecked(plan, self._host_results(hostvars, plan["targets"], "_rotate_precheck"))
            elif event == "created":
                plan, todo = _progress.created(plan, _progress.from_created(a["created"]), _progress.from_stored(a["stored"]))
            elif event == "recorded":
                plan, todo = _progress.recorded(plan, a["todo"], a["registered"])
            elif event == "discarded":
                plan, todo = _progress.discarded(plan, a["users"])
            elif event == "verified":
                # The next task adds the hosts to the rollout group; nothing is written in between.
                plan, todo = _progress.verified(plan, a["verifying"], a["results"])
                plan, todo = _progress.distributing(plan, a["verifying"])
            elif event == "gathered":
                rollouts = self._host_results(hostvars, plan["targets"], "_rotate_host_rollout")
                outcomes = dict((h, (r or {}).get("outcome")) for h, r in rollouts.items())
                plan, todo = _progress.gathered(plan, outcomes, a["prepare_failure"], now)
            elif event == "idle_checked":
                plan, todo = _progress.idle_checked(plan, a["keys_after"])
            elif event == "deactivated":
                plan, todo = _progress.deactivated(plan, now, a["settle_s"])
            elif event == "rechecked":
                expected = _progress.rechecks(plan)
                failures = _progress.host_check_failures(expected, self._host_results(hostvars, expected, "_rotate_recheck"))
                plan, todo = _progress.rechecked(plan, failures, a["retire"])
            elif event == "retired":
                plan, todo = _progress.retired(plan)
            elif event == "retire_failing":
                plan, todo = _progress.retire_failing(plan)
            elif event == "retire_failed":
                plan, todo = _progress.retire_failed(plan, a["failed_task"], a["failed_result"],
                                                     _progress.from_reactivations(a["registered"]))
            elif event == "put_back":
                plan, todo = _progress.put_back(plan, _progress.from_put_back(a["registered"]), a["held_in_aws"])
            else:
                plan, todo = _progress.rolled_back(plan, _progress.from_deleted(a["registered"]))
        except _progress.ProgressError as error:
            return dict(result, failed=True, msg=str(error), changed=False)
        return dict(result, plan=plan, todo=todo, changed=False)

    @staticmethod
    def _host_results(hostvars, hosts, name):
        """{host: the result it registered as name in its own play, or None}."""
        return dict((h, hostvars[h].get(name) if h in hostvars else None) for h in hosts)
