# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

"""rekey.aws.consumer_rollout: the whole rollout of one host in one task.

The controller half: it reads the secret from the store and renders templates here, then runs
the host half (rekey.aws.consumer_files, the service or command of each app once,
rekey.aws.consumer_health) and, when anything fails, puts the host back. What to apply and what
the outcome is are decided in module_utils/_host_rollout. The secret goes only into the
arguments of consumer_files (no_log there), never into this task's result.
"""

import time

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.plugins.action import ActionBase

from ansible_collections.rekey.aws.plugins.module_utils import _aws_consumers as aws
from ansible_collections.rekey.aws.plugins.module_utils import _dry_run as dry_run
from ansible_collections.rekey.aws.plugins.module_utils import _host_rollout as rollout
from ansible_collections.rekey.aws.plugins.module_utils import _progress
from ansible_collections.rekey.aws.plugins.module_utils import _rollout

ARGUMENT_SPEC = {
    "consumers": {"type": "list", "elements": "dict", "required": True},
    "state": {"type": "str", "default": "updated",
              "choices": ["updated", "restored", "reverted", "checked", "prechecked", "cleaned", "rechecked"]},
    "store": {"type": "dict", "default": {}},
    "existed": {"type": "dict", "default": {}},
    "users": {"type": "dict", "required": True},
    "interval_s": {"type": "float", "default": 2},
    "check_after": {"type": "float", "default": 0},
    "aws": {"type": "dict", "default": {}, "no_log": True},
}
WRITE, APPLY, HEALTH = "Write the new key", "Apply", "Check health on the new key"


class ActionModule(ActionBase):

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        dummy, args = self.validate_argument_spec(ARGUMENT_SPEC)
        self._vars = task_vars
        self._interval = args["interval_s"]
        self._aws = args["aws"]
        users = args["users"]
        consumers = _rollout.with_keys(users, args["consumers"])
        # Finish runs this delegated from the controller: the consumers name their host.
        self._host = consumers[0]["host"] if consumers else task_vars.get("inventory_hostname")
        try:
            if args["state"] == "updated" and self._task.check_mode:
                result.update(self._preview(dry_run.previewed(consumers)))
            elif args["state"] == "updated":
                work = rollout.being_distributed(consumers)
                result["outcome"] = self._update(rollout.with_adoption(work, users), args["store"])
                result["changed"] = result["outcome"]["phase"] != "started"
            elif args["state"] == "restored":
                problems, changed = self._restore(rollout.restorable(consumers, args["existed"]))
                result.update(problems=problems, changed=changed)
            elif args["state"] == "reverted":
                problems, changed = self._revert(rollout.reverting(consumers, users))
                result.update(problems=problems, changed=changed)
                if problems:
                    result.update(failed=True, msg="; ".join(problems))
            elif args["state"] == "checked":
                result["health_failures"] = self._health(consumers, "target_key_id")
            elif args["state"] == "prechecked":
                result["health_failures"] = self._health(consumers, None, existing_files_only=True)
                refusal = rollout.precheck_refusal(result["health_failures"])
                if refusal:
                    result.update(failed=True, msg=refusal)
            elif args["state"] == "rechecked":
                # The backups go while the deactivation propagates; the checks wait for check_after.
                result.update(self._clean(consumers, users))
                # The same consumers the controller expects re-checks of (rotation_update rechecked).
                rechecks = _progress.rechecks({"users": users, "entries": consumers}).get(self._host, [])
                if rechecks:
                    time.sleep(max(0.0, args["check_after"] - time.time()))
                result["health_failures"] = self._health(rechecks, "target_key_id")
            else:
                result.update(self._clean(consumers, users))
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result

    # --- the steps ----------------------------------------------------------------------------

    def _update(self, consumers, store):
        outcome = rollout.started(consumers, time.time())
        # The consumers held in AWS got their new key from the controller before this host's turn
        # (rekey.aws.consumer_aws): here they are only applied and checked.
        files, in_aws = rollout.files_and_aws(consumers)
        try:
            keys = self._keys(files, store)
            contents = self._render(files, keys)
        except AnsibleError as error:
            return rollout.rolled_back(rollout.failed(outcome, "Read the new key", ["%s: %s" % (self._host, error)]),
                                       [], time.time())
        unreachable = self._unreachable()
        if unreachable:
            return rollout.rolled_back(rollout.failed(outcome, WRITE, [unreachable]), [], time.time())
        written = self._module("rekey.aws.consumer_files", {"state": "written", "consumers": files,
                                                            "keys": keys, "contents": contents}) if files else {}
        del keys, contents
        outcome = rollout.written(outcome, written, in_aws)
        problems = rollout.file_problems(self._host, written)
        step = WRITE
        if not problems:
            unchanged = [c for c in consumers if c["name"] not in rollout.changed_names(written)]
            outcome, to_apply = rollout.applying(outcome, consumers, self._settled(unchanged))
            step, problems = APPLY, self._apply(to_apply)
        if not problems:
            failures = self._health(consumers, "target_key_id")
            step, problems = HEALTH, [f["output"] for f in failures]
        if not problems:
            return rollout.updated(outcome, time.time())
        outcome = rollout.failed(outcome, step, problems)
        back, _changed = self._restore(rollout.restorable(consumers, outcome["existed"]), restore_aws=True)
        return rollout.rolled_back(outcome, back, time.time())

    def _preview(self, consumers):
        """Check mode: what an update would do, read from the host without changing it. No store
        is read: the files are compared with their would-be content made with placeholder keys,
        masked on the host (rekey.aws.consumer_files in check mode)."""
        files, in_aws = rollout.files_and_aws(consumers)
        keys = dry_run.placeholder_keys(files)
        contents = self._render(files, keys)
        found = self._module("rekey.aws.consumer_files", {"state": "written", "consumers": files,
                                                          "keys": keys, "contents": contents}) if files else {}
        unchanged = [c for c in files if c.get("new_key_id") and c["name"] not in rollout.changed_names(found)
                     and c["name"] in [f["name"] for f in found.get("files", [])]]
        unchanged += [c for c in in_aws if c.get("new_key_id")]
        preview = dry_run.host_preview(self._host, consumers, found, self._settled(unchanged))
        out = {"preview": preview, "preview_lines": dry_run.preview_lines(preview),
               "changed": any(e["file"] != "keep" for e in preview["consumers"])}
        if self._task.diff:
            out["diff"] = dry_run.ansible_diffs(preview, found)
        return out

    def _settled(self, unchanged):
        """Consumers whose file already held the new key (a resumed rotation) and whose app is
        proven by one check to run on it: they are not applied again."""
        checks = rollout.health_checks(unchanged, "target_key_id", only_key_checks=True)
        if not checks:
            return []
        found = self._module("rekey.aws.consumer_health", {"checks": checks, "once": True})
        return [r["name"] for r in found.get("results", []) if r["healthy"]]

    def _apply(self, consumers):
        problems = []
        for a in rollout.applies(consumers):
            if a["apply"] == "command":
                done = self._module("ansible.builtin.command", {"cmd": a["apply_command"]})
            else:
                state = "restarted" if a["apply"] == "restart" else "reloaded"
                done = self._module("ansible.builtin.service", {"name": a["service"], "state": state})
            problem = rollout.apply_problem(self._host, a, done)
            if problem:
                problems.append(problem)
        return problems

    def _health(self, consumers, key_field, existing_files_only=False):
        checks = rollout.health_checks(consumers, key_field, existing_files_only=existing_files_only)
        if not checks:
            return []
        found = self._module("rekey.aws.consumer_health", {"checks": checks, "interval_s": self._interval})
        if found.get("unreachable") or found.get("failed"):
            return rollout.unreachable_failures(self._host, consumers, found.get("msg", "failed"))
        return rollout.health_failures(self._host, consumers, found["results"])

    def _clean(self, consumers, users):
        files, dummy = rollout.files_and_aws(consumers)
        cleaned = self._module("rekey.aws.consumer_files", {
            "state": "cleaned", "consumers": rollout.with_cleanup(files, users)}) if files else {}
        return {"problems": rollout.file_problems(self._host, cleaned), "changed": cleaned.get("changed", False)}

    def _restore(self, consumers, restore_aws=False):
        """Put the files back, apply those changed and those held in AWS, re-check on the old key:
        (problems, changed). restore_aws: this host failed its own rollout, so it also puts back
        the parameters and secrets it reads (after a failed rollout, rekey.aws.consumer_aws has
        put them back once for every host before)."""
        if not consumers:
            return [], False
        files, in_aws = rollout.files_and_aws(consumers)
        problems = self._restore_aws(in_aws) if in_aws and restore_aws else []
        changed = []
        if files:
            restored = self._module("rekey.aws.consumer_files", {"state": "restored", "consumers": files})
            problems += rollout.file_problems(self._host, restored)
            changed = rollout.changed_names(restored)
            if restored.get("unreachable"):
                return problems, False
        changed += [c["name"] for c in in_aws]
        problems += self._apply([c for c in consumers if c["name"] in changed])
        problems += [f["output"] for f in self._health(consumers, "old_key_id")]
        return problems, bool(changed)

    def _revert(self, consumers):
        """Put the files back from a killed run's backups (its new key's secret is lost), apply those
        changed, re-check on the old key: (problems, changed)."""
        if not consumers:
            return [], False
        reverted = self._module("rekey.aws.consumer_files", {"state": "reverted", "consumers": consumers})
        problems = rollout.file_problems(self._host, reverted)
        if reverted.get("unreachable"):
            return problems, False
        changed = rollout.changed_names(reverted)
        problems += rollout.lost_key_problems(self._host, consumers, reverted)
        problems += self._apply([c for c in consumers if c["name"] in changed])
        problems += [f["output"] for f in self._health(consumers, "old_key_id", existing_files_only=True)]
        return problems, bool(changed)

    # --- the controller's part ----------------------------------------------------------------

    def _restore_aws(self, consumers):
        """Put back the parameters and secrets of these consumers (one read each when they do not
        hold the new key); the problems name them, never a value."""
        try:
            clients = aws.Clients(aws.connection_params(self._aws))
        except aws.AwsConsumerError as error:
            return ["%s: cannot put back the keys held in AWS: %s" % (self._host, error)]
        results = [aws.restore(clients, t, False) for t in aws.targets(consumers)]
        return ["%s: %s" % (self._host, r["problem"]) for r in results if r["problem"]]

    def _keys(self, consumers, store):
        """The new key of each user of these consumers, from the store; it must be the key the
        plan distributes."""
        lookup = self._shared_loader_obj.lookup_loader.get("rekey.aws.stored_key", loader=self._loader,
                                                           templar=self._templar)
        keys = {}
        for c in consumers:
            user = c["iam_user"]
            if user in keys:
                continue
            [record] = lookup.run([user], variables=self._vars, **store)
            if record["access_key_id"] != c["target_key_id"]:
                raise AnsibleError("the store holds key %s of IAM user %s, but this rollout distributes %s"
                                   % (record["access_key_id"], user, c["target_key_id"]))
            keys[user] = {"access_key_id": record["access_key_id"], "secret_access_key": record["secret_access_key"]}
        return keys

    def _render(self, consumers, keys):
        """The template of each consumer of format template, rendered with its key."""
        contents = {}
        templated = [c for c in consumers if c["format"] == "template"]
        if not templated:
            return contents
        lookup = self._shared_loader_obj.lookup_loader.get("ansible.builtin.template", loader=self._loader,
                                                           templar=self._templar)
        for c in templated:
            key = keys[c["iam_user"]]
            [contents[c["name"]]] = lookup.run([c["template_src"]], variables=self._vars, template_vars={
                "rotate_access_key_id": key["access_key_id"], "rotate_secret_access_key": key["secret_access_key"]})
        return contents

    def _unreachable(self):
        """Why the host cannot be reached now (nothing was written yet), or None. A host lost
        while its files are written may hold the new key; one lost before cannot."""
        try:
            self._low_level_execute_command("true")
        except AnsibleConnectionFailure as error:
            return "%s: unreachable, nothing was written: %s" % (self._host, str(error).strip()[:300])
        return None

    def _module(self, name, args):
        """Run a module on the host; an unreachable host is a result with unreachable set."""
        try:
            return self._execute_module(module_name=name, module_args=args, task_vars=self._vars)
        except AnsibleConnectionFailure as error:
            return {"unreachable": True, "failed": True, "msg": str(error)}
