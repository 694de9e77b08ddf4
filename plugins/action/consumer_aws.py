# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

"""rekey.aws.consumer_aws: write the new keys of the consumers held in AWS (SSM Parameter Store,
Secrets Manager), once per parameter or secret, or put them back, in the controller's process.

Like rekey.aws.key_store, the calls run in-process through module_utils: the secret goes from
the store straight into the TLS request, never into a module's argument file. The decisions are
module_utils/_aws_consumers'; the result never holds a value, only key ids.
"""

from ansible.errors import AnsibleError
from ansible.module_utils.common.parameters import remove_values
from ansible.plugins.action import ActionBase

from ansible_collections.rekey.aws.plugins.module_utils import _aws_consumers as aws
from ansible_collections.rekey.aws.plugins.module_utils import _connection
from ansible_collections.rekey.aws.plugins.module_utils import _dry_run as dry_run
from ansible_collections.rekey.aws.plugins.module_utils import _host_rollout as rollout
from ansible_collections.rekey.aws.plugins.module_utils import _rollout

OPTIONS = {
    "consumers": {"type": "list", "elements": "dict", "required": True},
    "users": {"type": "dict", "required": True},
    "state": {"type": "str", "choices": ["written", "restored"], "default": "written"},
    "store": {"type": "dict", "default": {}},
}
ARGUMENT_SPEC = _connection.connection_argspec(**OPTIONS)


def stored_keys(action, users, store):
    """{user: {access_key_id, secret_access_key}} of these users from the store (the stored_key
    lookup); each must be the key the plan distributes (users: {user: target key id})."""
    lookup = action._shared_loader_obj.lookup_loader.get("rekey.aws.stored_key", loader=action._loader,
                                                         templar=action._templar)
    keys = {}
    for user, target_key_id in users.items():
        [record] = lookup.run([user], variables=action._task_vars, **store)
        if record["access_key_id"] != target_key_id:
            raise AnsibleError("the store holds key %s of IAM user %s, but this rollout distributes %s"
                               % (record["access_key_id"], user, target_key_id))
        keys[user] = {"access_key_id": record["access_key_id"], "secret_access_key": record["secret_access_key"]}
    return keys


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        dummy, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        self._task_vars = task_vars
        secrets = {args[name] for name in ("secret_key", "session_token") if args.get(name)}
        consumers = _rollout.with_keys(args["users"], args["consumers"])
        check_mode = self._task.check_mode
        clients = aws.Clients(args)
        if args["state"] == "written":
            work = dry_run.previewed(consumers) if check_mode else rollout.being_distributed(consumers)
            results = self._write(clients, aws.targets(work), args["store"], check_mode, secrets)
            result["failed_hosts"] = aws.failed_hosts(results)
        else:
            results = [aws.restore(clients, t, check_mode) for t in aws.targets(consumers)]
            result["unrestored_users"] = aws.unrestored_users(results)
        result.update(targets=results, problems=[r["problem"] for r in results if r["problem"]],
                      changed=any(r["changed"] for r in results))
        if self._task.diff and results:
            result["diff"] = aws.diff(results)
        # Belt and braces: no code path above puts a secret in the result.
        return remove_values(result, secrets)

    def _write(self, clients, targets, store, check_mode, secrets):
        """Each target written (check mode: previewed from the key ids, no secret read); the secrets
        read join `secrets`, to be masked out of the result."""
        if not targets:
            return []
        keys = {}
        if not check_mode:
            try:
                keys = stored_keys(self, dict((t["iam_user"], t["new_key_id"]) for t in targets), store)
            except AnsibleError as error:
                return [aws.result(t, "none", None, None, "cannot read the new key: %s" % error) for t in targets]
            secrets.update(k["secret_access_key"] for k in keys.values())
        return [aws.write(clients, t, keys, check_mode) for t in targets]
