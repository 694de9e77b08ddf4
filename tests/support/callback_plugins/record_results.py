# Test-only callback: appends every task result, as Ansible would show it (no_log censoring
# already applied), to the JSON-lines file named by REKEY_TEST_RESULTS.
from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: record_results
type: aggregate
short_description: test-only, records task results as JSON lines
description: Appends one JSON object per task result to the file named by REKEY_TEST_RESULTS.
requirements:
  - enable in callbacks_enabled
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "record_results"
    CALLBACK_NEEDS_ENABLED = True

    def _record(self, result, status):
        path = os.environ.get("REKEY_TEST_RESULTS")
        if not path:
            return
        task = getattr(result, "task", None) or result._task
        host = getattr(result, "host", None) or result._host
        payload = getattr(result, "result", None)
        if payload is None:
            payload = result._result
        entry = {
            "host": host.get_name(),
            "task": task.get_name(),
            "status": status,
            "changed": bool(payload.get("changed", False)),
            "result": payload,
        }
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, default=str) + "\n")

    def v2_runner_on_ok(self, result):
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "ignored" if ignore_errors else "failed")

    def v2_runner_on_skipped(self, result):
        self._record(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._record(result, "unreachable")
