# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

"""rekey.aws.key_audit: the audit of keys access_key_info read, on the controller. The decisions
are module_utils/_audit's; this reads from the inventory the consumers of the hosts, their
audit_ec2_instance and what host_dmi_info read on them. No AWS call, no write."""

import datetime

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.rekey.aws.plugins.module_utils import _audit
from ansible_collections.rekey.aws.plugins.module_utils._keys import iso

ARGUMENT_SPEC = {
    "keys": {"type": "list", "elements": "dict", "required": True},
    "hosts": {"type": "list", "elements": "str", "default": []},
    "max_age_days": {"type": "int", "default": 90},
    "unused_days": {"type": "int", "default": 45},
    "dmi_var": {"type": "str", "default": "_audit_dmi"},
}


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        dummy, args = self.validate_argument_spec(ARGUMENT_SPEC)
        for name in ("max_age_days", "unused_days"):
            if args[name] < 0:
                raise AnsibleActionFail("%s %d is not valid: expected 0 or more days" % (name, args[name]))
        hostvars = task_vars["hostvars"]
        hosts = [h for h in args["hosts"] if h in hostvars]
        consumers = dict((h, {"rotate_consumers": hostvars[h].get("rotate_consumers", [])}) for h in hosts)
        by_user = _audit.consumers_by_user(hosts, consumers)
        holding = set(c["host"] for held in by_user.values() for c in held)
        problems = [p for p in (_audit.ec2_setting_problem(h, hostvars[h].get(_audit.EC2_VAR)) for h in hosts) if p]
        if problems:
            raise AnsibleActionFail("; ".join(problems))
        statuses = dict((h, _audit.host_status(hostvars[h].get(_audit.EC2_VAR), hostvars[h].get(args["dmi_var"])))
                        for h in hosts if h in holding)
        now = datetime.datetime.now(datetime.timezone.utc)
        audit = dict(generated_at=iso(now), **_audit.audit(args["keys"], by_user, statuses, args["max_age_days"],
                                                           args["unused_days"], now))
        return dict(result, changed=False, audit=audit,
                    lines=_audit.lines(audit["access_keys"], args["max_age_days"]) + _audit.summary_lines(audit))
