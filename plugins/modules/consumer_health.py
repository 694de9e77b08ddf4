#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r"""
module: consumer_health
short_description: Run the health checks of a host's consumers, all at once
version_added: 0.2.0
description:
  - The host half of the health checks of M(rekey.aws.consumer_rollout), which calls it.
  - Runs every check at the same time, each retried every O(interval_s) until it passes or its own
    C(timeout_s) from the start is spent, so a host's checks take as long as the slowest one, not
    their sum.
  - An HTTP check passes when the answer has the expected status and, when C(expect) is set, its
    body contains that text (the key id the app must be using). A command check passes when the
    command exits 0; it runs without a shell and is stopped when its budget is spent.
  - Uses the Python standard library only, so targets need no boto3.
author:
  - rekey.aws contributors (@rekey)
extends_documentation_fragment:
  - rekey.aws._attributes
  - rekey.aws._attributes.INFO_MODULE
options:
  checks:
    description:
      - The checks, each with C(name) (the consumer), C(timeout_s), and either C(url) with
        C(status) and C(expect) (text the body must contain, empty for none) or C(command).
      - A check with C(requires), a path, is not run (and counts as passed) while that file does
        not exist (a consumer whose key file the rotation will create).
    type: list
    elements: dict
    required: true
  interval_s:
    description: Seconds between two tries of a failing check.
    type: float
    default: 2
  once:
    description: Try each check once, without retrying.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Check that the app answers on the new key
  rekey.aws.consumer_health:
    checks:
      - {name: app, url: "http://127.0.0.1:8080/health", status: 200, expect: AKIAEXAMPLE0000000001, timeout_s: 30}
      - {name: worker, command: "/usr/local/bin/worker --check", timeout_s: 10}
"""

RETURN = r"""
results:
  description: One entry per check, in order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The consumer's name.
      type: str
    check:
      description: The check, as C(GET url) or C(command ...).
      type: str
    healthy:
      description: Whether it passed.
      type: bool
    got:
      description: What the last try got (status and the start of the body, or exit code and output).
      type: str
    attempts:
      description: How many tries it took.
      type: int
    output:
      description: One line saying what was expected and what was got.
      type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rekey.aws.plugins.module_utils._health_checks import run_all


def main():
    module = AnsibleModule(
        argument_spec=dict(
            checks=dict(type="list", elements="dict", required=True),
            interval_s=dict(type="float", default=2),
            once=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    checks = []
    for c in module.params["checks"]:
        if not c.get("name") or not (c.get("url") or c.get("command")) or int(c.get("timeout_s") or 0) < 1:
            module.fail_json(msg="check %r needs name, url or command, and timeout_s of at least 1" % (c,))
        checks.append(dict(c, status=int(c.get("status") or 200), expect=c.get("expect") or "",
                           timeout_s=int(c["timeout_s"])))
    module.exit_json(changed=False, results=run_all(checks, module.params["interval_s"], module.params["once"]))


if __name__ == "__main__":
    main()
