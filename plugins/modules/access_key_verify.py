#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r"""
module: access_key_verify
short_description: Wait until access keys authenticate, or until they are refused
version_added: 0.1.0
description:
  - Calls STS C(GetCallerIdentity) with each given key until O(consecutive) answers in a row
    match O(expect), or O(timeout) runs out. All keys are checked at the same time.
  - A new IAM key is not usable everywhere at once (AWS takes seconds to propagate it), and one
    success proves little, hence several successes in a row.
  - Each STS call is signed with the key under test only. The module's credential options
    (O(access_key), O(secret_key), O(session_token), O(profile)) and the AWS credential
    environment variables are never used; they are accepted so that C(group/rekey.aws.aws)
    C(module_defaults) can be set for a whole play.
  - Answers that say nothing about the key (throttling, HTTP 5xx, network errors) neither count
    nor break a streak. botocore does not retry them (O(retries) is ignored); the next attempt
    comes after O(interval).
author:
  - rekey.aws contributors (@rekey)
requirements:
  - boto3
  - botocore
options:
  keys:
    description: The keys to check.
    type: list
    elements: dict
    required: true
    suboptions:
      access_key_id:
        description: The access key id.
        type: str
        required: true
      secret_access_key:
        description: Its secret.
        type: str
        required: true
      session_token:
        description: The session token, for temporary credentials.
        type: str
  expect:
    description:
      - V(authenticated) waits until each key is accepted O(consecutive) times in a row.
      - V(refused) waits until each key is refused (for example after it was deactivated)
        O(consecutive) times in a row.
    type: str
    choices: [authenticated, refused]
    default: authenticated
  consecutive:
    description: How many answers in a row must match O(expect).
    type: int
    default: 3
  timeout:
    description: Seconds each key may take before the task fails.
    type: int
    default: 120
  interval:
    description: Seconds between two calls with the same key.
    type: float
    default: 1.0
seealso:
  - module: rekey.aws.access_key
extends_documentation_fragment:
  - rekey.aws._connection
  - rekey.aws._attributes
  - rekey.aws._attributes.actiongroup_aws
  - rekey.aws._attributes.info_module
"""

EXAMPLES = r"""
- name: Create a key
  rekey.aws.access_key:
    user_name: demo-app
  register: new_key
  no_log: true

- name: Wait until it authenticates three times in a row
  rekey.aws.access_key_verify:
    keys:
      - access_key_id: "{{ new_key.access_key.access_key_id }}"
        secret_access_key: "{{ new_key.secret_access_key }}"
  when: new_key.created

- name: After deactivating the old key, wait until AWS refuses it everywhere
  rekey.aws.access_key_verify:
    keys:
      - access_key_id: "{{ old_key_id }}"
        secret_access_key: "{{ old_secret }}"
    expect: refused
    timeout: 300
"""

RETURN = r"""
results:
  description: One entry per key, in the order given.
  type: list
  elements: dict
  returned: always
  contains:
    access_key_id:
      description: The key id.
      type: str
      sample: AKIAIOSFODNN7EXAMPLE
    arn:
      description: The ARN STS answered with on the last success; V(null) if the last conclusive answer was a refusal.
      type: str
      sample: arn:aws:iam::123456789012:user/demo-app
    authenticated:
      description: Whether the last conclusive answer accepted the key.
      type: bool
      sample: true
    attempts:
      description: How many calls were made with this key.
      type: int
      sample: 7
    seconds:
      description: Seconds from the first call until the key matched O(expect) (or gave up).
      type: float
      sample: 6.2
"""

import concurrent.futures

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.rekey.aws.plugins.module_utils._connection import (
    BOTO3_IMPORT_ERROR,
    HAS_BOTO3,
    connection_argspec,
)
from ansible_collections.rekey.aws.plugins.module_utils._iam import IamError, caller_identity, sts_for_key
from ansible_collections.rekey.aws.plugins.module_utils._keys import key_id_problem, wait_for_key

MAX_THREADS = 32


def option_problem(params):
    if not params["keys"]:
        return "keys is empty: expected at least one key to check"
    for index, key in enumerate(params["keys"]):
        problem = key_id_problem(key["access_key_id"], option="keys[%d].access_key_id" % index)
        if problem:
            return problem
    for name, minimum in (("consecutive", 1), ("timeout", 1), ("interval", 0)):
        if params[name] < minimum:
            return "%s=%s is not valid: expected at least %s" % (name, params[name], minimum)
    return None


def failure_message(params, failed):
    want = "authenticated" if params["expect"] == "authenticated" else "refused"
    parts = []
    for result, waited in failed:
        if params["expect"] == "refused" and result["authenticated"]:
            last = "still authenticated"
        else:
            last = "last error %s" % (waited["last_error"] or "none")
        parts.append("%s (%s, %d attempts)" % (result["access_key_id"], last, result["attempts"]))
    return ("timed out after %d s waiting for %d key(s) to be %s %d times in a row: %s"
            % (params["timeout"], len(failed), want, params["consecutive"], "; ".join(parts)))


def verify(params):
    clients = [sts_for_key(key, params) for key in params["keys"]]

    def wait(sts):
        return wait_for_key(lambda: caller_identity(sts), params["expect"], params["consecutive"],
                            params["timeout"], params["interval"])

    with concurrent.futures.ThreadPoolExecutor(max_workers=min(len(clients), MAX_THREADS)) as pool:
        waited = list(pool.map(wait, clients))
    results = [{"access_key_id": key["access_key_id"], "arn": w["arn"], "authenticated": w["authenticated"],
                "attempts": w["attempts"], "seconds": w["seconds"]}
               for key, w in zip(params["keys"], waited)]
    failed = [(r, w) for r, w in zip(results, waited) if not w["ok"]]
    return results, failed


ARGUMENT_SPEC = connection_argspec(
    keys={"type": "list", "elements": "dict", "required": True, "no_log": False, "options": {
        "access_key_id": {"type": "str", "required": True, "no_log": False},
        "secret_access_key": {"type": "str", "required": True, "no_log": True},
        "session_token": {"type": "str", "no_log": True},
    }},
    expect={"type": "str", "default": "authenticated", "choices": ["authenticated", "refused"]},
    consecutive={"type": "int", "default": 3},
    timeout={"type": "int", "default": 120},
    interval={"type": "float", "default": 1.0},
)
CONSTRAINTS = {}


def execute(module):
    """The module's work on validated parameters (also run in-process by the action plugin)."""
    problem = option_problem(module.params)
    if problem:
        module.fail_json(msg=problem)
    try:
        results, failed = verify(module.params)
    except IamError as error:
        module.fail_json(msg=error.message, error_code=error.code, action=error.action)
    if failed:
        module.fail_json(msg=failure_message(module.params, failed), results=results)
    return {"changed": False, "results": results}


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True, **CONSTRAINTS)
    if not HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3"), exception=BOTO3_IMPORT_ERROR)
    module.exit_json(**execute(module))


if __name__ == "__main__":
    main()
