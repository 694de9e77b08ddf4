# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# Internal to rekey.aws: not a public API, may change without notice.
"""The health checks of a host's consumers, run by rekey.aws.consumer_health on the host: every
check at once, each retried within its own budget. Standard library only (targets have no boto3)."""

import os
import shlex
import subprocess
import threading
import time

from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.urls import ConnectionError as UrlConnectionError, SSLValidationError, open_url

from ansible_collections.rekey.aws.plugins.module_utils._coerce import truncate

MAX_BODY = 65536
MAX_REQUEST_S = 5


def http_verdict(check, status, body, error):
    """(healthy, got) of one answer: status and body, or error when there was no answer."""
    if status is None:
        return False, "no answer: " + truncate(str(error).strip(), 200)
    healthy = status == int(check["status"]) and (not check["expect"] or check["expect"] in body)
    return healthy, "HTTP %s %s" % (status, truncate(body.strip(), 200))


def command_verdict(rc, output):
    return rc == 0, "exit %s %s" % (rc, truncate(output.strip(), 200))


def describe(check):
    """The check as messages name it, and what it expects."""
    if check.get("url"):
        want = "HTTP %s%s" % (check["status"], " with %s" % check["expect"] if check["expect"] else "")
        return "GET %s" % check["url"], "health check GET %s expected %s" % (check["url"], want)
    return "command %s" % check["command"], "health command %s expected exit 0" % check["command"]


def _get(url, timeout):
    try:
        answer = open_url(url, timeout=timeout)
        return answer.getcode(), answer.read(MAX_BODY).decode("utf-8", "replace"), None
    except HTTPError as error:
        return error.code, error.read(MAX_BODY).decode("utf-8", "replace"), None
    except (URLError, UrlConnectionError, SSLValidationError, OSError, ValueError) as error:
        return None, "", getattr(error, "reason", error)


def _run(command, timeout):
    try:
        # Not AnsibleModule.run_command: it has no timeout, and a hung check must end with its budget.
        done = subprocess.run(shlex.split(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE,  # pylint: disable=ansible-bad-function
                              timeout=max(timeout, 0.1), check=False)
        output = (done.stderr + b" " + done.stdout).decode("utf-8", "replace")
        return done.returncode, output
    except subprocess.TimeoutExpired:
        return "timeout", "no exit within %.1f s" % timeout
    except OSError as error:
        return "?", str(error)


def attempt(check, left):
    """One try of a check with `left` seconds of budget: (healthy, got)."""
    if check.get("url"):
        status, body, error = _get(check["url"], max(min(left, MAX_REQUEST_S), 1))
        return http_verdict(check, status, body, error)
    rc, output = _run(check["command"], left)
    return command_verdict(rc, output)


def run_check(check, started, interval, once, clock=time.monotonic, sleep=time.sleep, try_=attempt,
              exists=os.path.exists):
    """Try a check until it is healthy or its budget (timeout_s from started) is spent; one try
    only with once. A check whose `requires` file does not exist is not run (healthy: its app has
    no key file yet). Returns {name, check, healthy, got, attempts, output}."""
    what, expected = describe(check)
    if check.get("requires") and not exists(check["requires"]):
        got = "not run: %s does not exist yet" % check["requires"]
        return {"name": check["name"], "check": what, "healthy": True, "got": got, "attempts": 0,
                "output": "%s: %s" % (check["name"], got)}
    attempts = 0
    while True:
        attempts += 1
        healthy, got = try_(check, check["timeout_s"] - (clock() - started))
        left = check["timeout_s"] - (clock() - started)
        if healthy or once or left <= 0:
            break
        sleep(min(interval, left))
        if check["timeout_s"] - (clock() - started) <= 0:
            break
    return {"name": check["name"], "check": what, "healthy": healthy, "got": got, "attempts": attempts,
            "output": "%s: %s, got %s (%s attempts)" % (check["name"], expected, got, attempts)}


def run_all(checks, interval, once):
    """Every check at once, each in its own thread within its own budget; results in order."""
    started = time.monotonic()
    results = [None] * len(checks)

    def work(index):
        results[index] = run_check(checks[index], started, interval, once)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(checks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results
