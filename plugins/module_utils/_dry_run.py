# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# Internal to rekey.aws: not a public API, may change without notice.
"""Pure logic of one host's dry run (rekey.aws.consumer_rollout in check mode), decided on the
controller: which consumers would get a new key, the placeholder keys they are previewed with
(no new key exists in check mode, and no secret is read), and per consumer which file would
change and which service would be restarted or reloaded. Plain dicts in and out; never a secret:
the texts of the files were masked on the host."""

from ansible_collections.rekey.aws.plugins.module_utils import _consumers
from ansible_collections.rekey.aws.plugins.module_utils import _host_rollout as rollout
from ansible_collections.rekey.aws.plugins.module_utils._masked_diff import NEW_KEY_TEXT, placeholder_key

_APPLY_WORDS = {"restart": "restart service %s", "reload": "reload service %s", "command": "run %s"}


def previewed(consumers):
    """The consumers (with their user's keys) a real run would write: their user is rotating and
    its new key is not on every host yet."""
    return [c for c in consumers if c.get("action") == "rotate" and c.get("phase") != "distributed"]


def placeholder_keys(consumers):
    """The key of each user the preview writes with: the new key's id when it exists already (a
    resumed rotation), never a secret."""
    return dict((c["iam_user"], placeholder_key(c.get("new_key_id"))) for c in consumers)


def key_change(c):
    return "%s -> %s" % (c.get("old_key_id") or "no key", c.get("new_key_id") or NEW_KEY_TEXT)


def apply_text(a):
    if a["apply"] == "none":
        return "no restart (apply none)"
    return _APPLY_WORDS[a["apply"]] % rollout.apply_target(a)


def host_preview(host, consumers, files_result, settled):
    """What a real run would do on one host: per consumer its file (would create, change or keep,
    what changes, the masked diff) and its apply; settled: the consumers whose file already holds
    the new key and whose app a check proved to run on it (they are not applied). Returns
    {host, consumers: [...], applies: [...], problems: [...]}."""
    files = dict((f["name"], f.get("preview") or {}) for f in files_result.get("files", []))
    problems = rollout.file_problems(host, files_result)
    out, to_apply = [], []
    for c in consumers:
        f = files.get(c["name"])
        if _consumers.held_in_aws(c):
            applied = c["name"] not in settled
            if applied:
                to_apply.append(c)
            entry = {"file": "in_aws", "changes": [], "diff_lines": [],
                     "apply": apply_text(c) if applied else "no restart (already runs on the new key)"}
        elif f is None:
            entry = {"file": "not previewed", "changes": [], "diff_lines": [], "apply": "unknown"}
        else:
            applied = c["name"] not in settled
            if applied:
                to_apply.append(c)
            entry = {"file": f["would"], "changes": f["changes"], "diff_lines": f["diff_lines"],
                     "apply": apply_text(c) if applied else "no restart (already runs on the new key)"}
        out.append(dict(entry, host=host, consumer=c["name"], iam_user=c["iam_user"], path=_consumers.location(c),
                        key=key_change(c)))
    applies = [apply_text(a) for a in rollout.applies(to_apply)]
    return {"host": host, "consumers": out, "applies": applies, "problems": problems}


def preview_lines(preview):
    """The preview of one host as lines for a person: one per consumer, the services applied
    once each, and what would fail."""
    lines = []
    for e in preview["consumers"]:
        if e["file"] == "not previewed":
            what = "not previewed"
        elif e["file"] == "in_aws":
            what = "written once from the controller, not on the host"
        elif e["file"] == "keep":
            what = "would stay as it is"
        elif e["file"] == "create":
            what = "would be created"
        else:
            what = "would change (%s)" % ", ".join(e["changes"])
        lines.append("%s %s (IAM user %s, key %s): %s %s; %s" % (
            preview["host"], e["consumer"], e["iam_user"], e["key"], e["path"], what, e["apply"]))
    if preview["applies"] and len(preview["consumers"]) > 1:
        lines.append("%s: once each: %s" % (preview["host"], "; ".join(preview["applies"])))
    lines.extend("%s: would fail: %s" % (preview["host"], p) for p in preview["problems"])
    return lines


def ansible_diffs(preview, files_result):
    """The masked texts of each file in the form Ansible shows with --diff."""
    files = dict((f["name"], f.get("preview") or {}) for f in files_result.get("files", []))
    out = []
    for e in preview["consumers"]:
        f = files.get(e["consumer"])
        if not f:
            continue
        out.append({"before_header": "%s %s (%s)" % (preview["host"], e["path"], e["consumer"]),
                    "after_header": "%s %s (%s, key %s)" % (preview["host"], e["path"], e["consumer"], e["key"]),
                    "before": f.get("before") or "", "after": f.get("after") or ""})
    return out
