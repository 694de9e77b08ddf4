# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

"""rekey.aws.key_audit: the audit of keys access_key_info read, on the controller. The decisions
are module_utils/_audit's; this reads the consumers of the hosts from the inventory. No AWS call,
no write."""

import datetime

from ansible.plugins.action import ActionBase

from ansible_collections.rekey.aws.plugins.module_utils import _audit
from ansible_collections.rekey.aws.plugins.module_utils._keys import iso

ARGUMENT_SPEC = {
    "keys": {"type": "list", "elements": "dict", "required": True},
    "hosts": {"type": "list", "elements": "str", "default": []},
    "max_age_days": {"type": "int", "default": 90},
}


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        dummy, args = self.validate_argument_spec(ARGUMENT_SPEC)
        hostvars = task_vars["hostvars"]
        consumers = dict((h, {"rotate_consumers": hostvars[h].get("rotate_consumers", [])})
                         for h in args["hosts"] if h in hostvars)
        keys = _audit.entries(args["keys"], args["max_age_days"], _audit.holders(args["hosts"], consumers))
        audit = {"generated_at": iso(datetime.datetime.now(datetime.timezone.utc)),
                 "max_age_days": args["max_age_days"], "access_keys": keys}
        return dict(result, changed=False, audit=audit, lines=_audit.lines(keys, args["max_age_days"]))
