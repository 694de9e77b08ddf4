# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

"""rekey.aws.rotation_plan: the checks and the plan of a rotation, on the controller.

step=check runs every check that needs no AWS call (the role variables and every consumer of
every host) and starts the run; step=plan decides, from what the IAM reads returned, the plan
of every user, how a rotation a killed run left goes on, the hosts of the rollout, and every
refusal. The decisions are module_utils' (_preflight, _resume, _plan, _rollout); this gathers
their inputs from the inventory. Nothing here calls AWS or writes anything.
"""

import datetime
import os
import random

from ansible.plugins.action import ActionBase

from ansible_collections.rekey.aws.plugins.module_utils import _plan, _preflight, _resume, _rollout
from ansible_collections.rekey.aws.plugins.module_utils._keys import iso

ARGUMENT_SPEC = {
    "step": {"type": "str", "choices": ["check", "plan"], "required": True},
    "settings": {"type": "dict", "required": True},
    "hosts": {"type": "list", "elements": "str", "required": True},
    "consumers_option": {"type": "dict"},
    "target_group_hosts": {"type": "list", "elements": "str", "default": []},
    "run": {"type": "dict"},
    "recorded": {"type": "dict", "default": {}},
    "keys": {"type": "list", "elements": "dict", "default": []},
    "store_checks": {"type": "list", "elements": "dict", "default": []},
    "limit_hosts": {"type": "list", "elements": "str"},
}
NO_VAULT_SECRET = ("Nothing was changed. rotate_store_backend vault_file needs a vault secret to store the new keys: run "
                   "with --vault-password-file or --vault-id, or use rotate_store_backend=ssm or secretsmanager")


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        dummy, args = self.validate_argument_spec(ARGUMENT_SPEC)
        args["settings"] = _preflight.normalized(args["settings"])
        self._vars = task_vars
        inventory = self._inventory(task_vars)
        if args["step"] == "check":
            return dict(result, **self._check(args, inventory))
        return dict(result, **self._plan(args, inventory, task_vars))

    @staticmethod
    def _inventory(task_vars):
        """{host: {rotate_consumers, inventory_dir}} of every host of the inventory."""
        hostvars = task_vars["hostvars"]
        out = {}
        for host in task_vars["groups"]["all"]:
            hv = hostvars[host]
            out[host] = {"rotate_consumers": hv.get("rotate_consumers", []), "inventory_dir": hv.get("inventory_dir")}
        return out

    def _check(self, args, inventory):
        now = datetime.datetime.now(datetime.timezone.utc)
        run_id = "%s-%06d" % (now.strftime("%Y%m%dT%H%M%SZ"), random.SystemRandom().randint(0, 999999))
        run = {"run_id": run_id, "started_at": iso(now), "started_epoch": now.timestamp(),
               "check_mode": bool(self._task.check_mode)}
        settings = args["settings"]
        report_path = _preflight.report_path(settings["rotate_report_path"], run_id)
        job_vars = dict((name, self._vars.get(name)) for name in _preflight.AWX_JOB_VARS)
        problems = _preflight.preflight_problems(settings, args["hosts"], inventory, args["consumers_option"],
                                                 args["target_group_hosts"], report_path, os.path.isfile,
                                                 job_vars=job_vars)
        out = {"run": run, "report_path": report_path, "changed": False}
        if problems:
            return dict(out, failed=True, users=[], msg="Nothing was changed. %s" % " | ".join(problems))
        return dict(out, users=_preflight.selected_users(settings["rotate_users"], args["hosts"], inventory),
                    store_phases=list(_resume.STORE_PHASES))

    def _plan(self, args, inventory, task_vars):
        settings, run = args["settings"], args["run"]
        users = _preflight.selected_users(settings["rotate_users"], args["hosts"], inventory)
        store_holds = dict((r["item"]["key"], r.get("access_key_id") == r["item"]["value"]["new_key_id"])
                           for r in args["store_checks"] if "item" in r and not r.get("skipped"))
        plan = _plan.decide(users, args["keys"], args["recorded"], store_holds, settings,
                            datetime.datetime.now(datetime.timezone.utc), args["hosts"], list(inventory), inventory,
                            run["run_id"])
        out = {"plan": plan, "todo": _plan.todo(plan["users"], settings, plan["entries"]), "changed": False}
        refusals = list(plan["errors"])
        left_out = _rollout.left_out_problem(plan["targets"], args["limit_hosts"])
        if left_out and not refusals:
            refusals.append(left_out)
        if not refusals and not run["check_mode"]:
            refusals.extend(_plan.foreign_lock_problems(plan["users"], args["recorded"], settings["rotate_lock_takeover"]))
            if (_plan.due_users(plan["users"]) and settings["rotate_store_backend"] == "vault_file"
                    and not self._loader._vault.secrets):
                refusals.append(NO_VAULT_SECRET)
        if refusals:
            return dict(out, failed=True, msg=" | ".join(refusals))
        return out
