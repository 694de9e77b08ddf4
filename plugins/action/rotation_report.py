# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

"""rekey.aws.rotation_report: the run's report, on the controller. The model and the summary are
module_utils/_report's; this writes the JSON (0600, in a directory made 0700 only when it is
missing: an existing directory is left as it is) and returns the summary and the set_stats data.
The report holds key ids, hosts, checks and times, never a secret."""

import datetime
import errno
import json
import os

from ansible.plugins.action import ActionBase

from ansible_collections.rekey.aws.plugins.action.key_store import write_atomically
from ansible_collections.rekey.aws.plugins.module_utils import _report

ARGUMENT_SPEC = {
    "plan": {"type": "dict", "required": True},
    "run": {"type": "dict", "required": True},
    "path": {"type": "str", "required": True},
    "prepare_failure": {"type": "dict", "default": {}},
    "finish_failure": {"type": "dict", "default": {}},
    "retire": {"type": "str", "default": "delete"},
    "lock_users": {"type": "list", "elements": "str", "default": []},
    "released": {"type": "bool", "default": False},
}
REPORT_DIR_MODE = 0o700


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        dummy, a = self.validate_argument_spec(ARGUMENT_SPEC)
        plan, run, check_mode = a["plan"], a["run"], bool(self._task.check_mode)
        now = datetime.datetime.now(datetime.timezone.utc)
        report = _report.report(plan["users"], plan.get("outcomes", {}), a["prepare_failure"], run, check_mode,
                                a["retire"], now)
        report = _report.complete(report, plan["users"], a["lock_users"], a["released"], a["finish_failure"])
        if not check_mode:
            try:
                self._write(a["path"], report)
            except OSError as error:
                return dict(result, failed=True, changed=False, report=report,
                            msg="cannot write the report %s: %s" % (a["path"], error.strerror or error))
        # The report records the run; writing it changes nothing that is managed.
        return dict(result, changed=False, report=report, summary=_report.summary_lines(report, a["path"]),
                    stats=_report.stats(report, a["path"]))

    @staticmethod
    def _write(path, report):
        directory = os.path.dirname(path)
        try:
            os.makedirs(directory, REPORT_DIR_MODE)
        except OSError as error:
            if error.errno != errno.EEXIST:
                raise
        write_atomically(path, (json.dumps(report, indent=4, sort_keys=True) + "\n").encode("utf-8"))
