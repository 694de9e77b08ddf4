#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r"""
module: consumer_files
short_description: Write, restore or clean up the key files of a host's consumers
version_added: 0.2.0
description:
  - The host half of M(rekey.aws.consumer_rollout), which calls it; use that action rather than this
    module.
  - With O(state=written), backs up each consumer's file (a new file, mode 0600 from its creation,
    in the backup directory, which is made mode 0700) and writes the key into it in its format,
    replacing the whole file in one atomic rename, so an app never reads a key id with another
    key's secret.
  - With O(state=restored), puts each file back as it was before the rotation. The backup is
    copied back when the file differs from it, and a file that did not exist before is removed.
  - With O(state=reverted), puts each file back as it was before a killed run's rotation whose
    new key the secret store lost, from that run's backup (removed once copied back); a file that
    run created (no backup, holding the lost key id) is removed; a file that run never reached is
    left as it is. C(files[].holds_lost_key) says whether a file still names the lost key.
  - With O(state=cleaned), removes the backups, which hold the old secret.
  - Uses the Python standard library only and makes no AWS call, so targets need no boto3.
author:
  - rekey.aws contributors (@rekey)
extends_documentation_fragment:
  - rekey.aws._attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: partial
    details:
      - The files hold secrets, so the module shows no diff itself. In check mode, with
        O(state=written), each file's RV(files[].preview) holds its text before and after with
        every secret masked (made on the host), which M(rekey.aws.consumer_rollout) shows as the diff.
  idempotent:
    support: full
    details:
      - A file that already holds the key is not written again.
options:
  state:
    description: What to do with the files of O(consumers).
    type: str
    choices: [written, restored, reverted, cleaned]
    required: true
  consumers:
    description:
      - The consumers, as the role's plan holds them, each with C(host), C(name), C(path),
        C(format), C(profile), C(env_names), C(mode), C(owner), C(group), C(iam_user) and
        C(backup), the path of its backup.
      - With O(state=written), C(adopt_run_id) names the run killed in the middle of the rotation this
        run resumes. The backup that run made becomes this run's backup, as it holds the file from
        before the rotation (the file itself may hold the new key already).
      - With O(state=restored), C(existed) says whether the file existed before it was written.
      - With O(state=reverted), C(revert_run_id) names the killed run whose backups are put back,
        and C(lost_key_id) the key id its files may hold.
      - With O(state=cleaned), C(earlier=true) also removes the backups earlier runs left.
    type: list
    elements: dict
    required: true
  keys:
    description:
      - With O(state=written), the key of each IAM user, by user name, with C(access_key_id) and C(secret_access_key).
        Never shown in output.
    type: dict
    default: {}
  contents:
    description:
      - With O(state=written), the rendered file of each consumer of format C(template), by name.
        Never shown in output.
    type: dict
    default: {}
"""

EXAMPLES = r"""
# Called by rekey.aws.consumer_rollout; shown for completeness.
- name: Put the files of this host back as they were
  rekey.aws.consumer_files:
    state: restored
    consumers:
      - {host: web1, name: app, path: /etc/app/aws.env, format: env, mode: "0600", iam_user: app,
         backup: /var/lib/rekey-aws/backups/20261130T000000Z-1-web1-app.bak, existed: true,
         env_names: {access_key_id: AWS_ACCESS_KEY_ID, secret_access_key: AWS_SECRET_ACCESS_KEY}}
"""

RETURN = r"""
files:
  description: One entry per consumer handled, in order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The consumer's name.
      type: str
    existed:
      description: Whether the file existed before it was written (O(state=written)).
      type: bool
    changed:
      description: Whether the file (or, for O(state=cleaned), a backup) was changed.
      type: bool
    holds_lost_key:
      description: With O(state=reverted), whether the file still names C(lost_key_id) afterwards.
      type: bool
    preview:
      description:
        - In check mode with O(state=written), what writing would do, made with placeholder keys
          (the id of O(keys) when given, never its secret). C(would) (V(create), V(change) or V(keep)),
          C(changes) (V(created), V(content), C(mode 0644 -> 0600), ...), C(before) and C(after) (the
          texts with every secret masked, C(before) null for a missing file) and C(diff_lines)
          (their unified diff).
      returned: in check mode with O(state=written)
      type: dict
problems:
  description: What could not be done, each naming the consumer, the file and the cause (never its content).
  returned: always
  type: list
  elements: str
"""

import grp
import os
import pwd
import stat

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rekey.aws.plugins.module_utils import _consumer_files as files
from ansible_collections.rekey.aws.plugins.module_utils import _masked_diff as diff


def _mode(consumer):
    return int(str(consumer.get("mode") or "0600"), 8)


def write(consumer, keys, contents, check_mode):
    """Back up and write one consumer's file; returns {name, existed, changed}."""
    path = consumer["path"]
    uid, gid = files.ids(consumer.get("owner"), consumer.get("group"))
    old = files.read(path)
    earlier = files.earlier_backups(consumer)
    adopted = files.backup_of_run(earlier, consumer.get("adopt_run_id"))
    key = keys.get(consumer["iam_user"]) or {}
    if check_mode:  # never a real secret in a preview, whatever the caller passed
        key = diff.placeholder_key(key.get("access_key_id"))
    text = _text(path, old)
    data = files.new_content(consumer, text, key.get("access_key_id"), key.get("secret_access_key"),
                             contents.get(consumer["name"])).encode("utf-8")
    if check_mode:
        return _preview(consumer, text if old is not None else None, data.decode("utf-8"), contents, uid, gid,
                        adopted is not None or old is not None)
    changed = old != data or _attributes_differ(path, _mode(consumer), uid, gid)
    for stale in earlier:
        if stale != adopted:
            files.remove(stale)
    if adopted:
        files.remove(consumer["backup"])
        _rename(adopted, consumer["backup"])
    elif old is not None:
        files.remove(consumer["backup"])
        current = os.stat(path)
        files.back_up(old, consumer["backup"], current.st_uid, current.st_gid)
    result = {"name": consumer["name"], "existed": adopted is not None or old is not None, "changed": changed}
    if changed:
        files.write_atomically(path, data, _mode(consumer), uid, gid)
    return result


def _preview(consumer, before, after, contents, uid, gid, existed):
    """Check mode: what writing would change, the texts masked here on the host (the keys are
    placeholders, see _masked_diff); {name, existed, changed, preview}."""
    pattern = contents.get(consumer["name"]) or ""
    shown_before, shown_after = (diff.masked(consumer, t, pattern) for t in (before, after))
    wanted = {"mode": "%04o" % _mode(consumer), "owner": consumer.get("owner") if uid is not None else None,
              "group": consumer.get("group") if gid is not None else None}
    preview = diff.file_preview(consumer["name"], consumer["path"], shown_before, shown_after,
                                diff.attribute_changes(_attributes(consumer["path"]), wanted))
    return {"name": consumer["name"], "existed": existed, "changed": preview["changed"],
            "preview": dict(preview, before=shown_before, after=shown_after)}


def _attributes(path):
    """{mode, owner, group} of a file (names where they resolve), None when it does not exist."""
    try:
        current = os.stat(path)
    except OSError:
        return None
    return {"mode": "%04o" % stat.S_IMODE(current.st_mode), "owner": _name(pwd.getpwuid, current.st_uid),
            "group": _name(grp.getgrgid, current.st_gid)}


def _name(lookup, number):
    try:
        return lookup(number)[0]
    except KeyError:
        return str(number)


def _text(path, data):
    if data is None:
        return ""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise files.FileProblem("%s is not UTF-8 text; it was left unchanged" % path)


def _rename(source, target):
    try:
        os.rename(source, target)
    except OSError as error:
        raise files.FileProblem("cannot take over the backup %s: %s" % (source, error.strerror))


def _attributes_differ(path, mode, uid, gid):
    try:
        current = os.stat(path)
    except OSError:
        return True
    return (stat.S_IMODE(current.st_mode) != mode or (uid is not None and current.st_uid != uid)
            or (gid is not None and current.st_gid != gid))


def restore(consumer, check_mode):
    """Put one consumer's file back as it was; returns {name, changed}."""
    path = consumer["path"]
    if not consumer.get("existed"):
        changed = files.read(path) is not None
        if changed and not check_mode:
            files.remove(path)
        return {"name": consumer["name"], "changed": changed}
    saved = files.read(consumer["backup"])
    if saved is None:
        raise files.FileProblem("the backup %s of %s is missing" % (consumer["backup"], path))
    if files.read(path) == saved:
        return {"name": consumer["name"], "changed": False}
    if not check_mode:
        uid, gid = files.ids(consumer.get("owner"), consumer.get("group"))
        files.write_atomically(path, saved, _mode(consumer), uid, gid)
    return {"name": consumer["name"], "changed": True}


def revert(consumer, check_mode):
    """Put one consumer's file back from the backup of the killed run whose new key is lost;
    returns {name, changed, holds_lost_key}."""
    path = consumer["path"]
    lost = consumer["lost_key_id"].encode("utf-8")
    backup = files.backup_of_run(files.earlier_backups(consumer), consumer["revert_run_id"])
    current = files.read(path)
    if backup is not None:
        after = files.read(backup)
        changed = current != after
        if not check_mode:
            if changed:
                uid, gid = files.ids(consumer.get("owner"), consumer.get("group"))
                files.write_atomically(path, after, _mode(consumer), uid, gid)
            files.remove(backup)
    elif current is not None and lost in current:
        # Backed up before it is written, so without a backup the killed run created it.
        after, changed = None, True
        if not check_mode:
            files.remove(path)
    else:
        after, changed = current, False
    return {"name": consumer["name"], "changed": changed, "holds_lost_key": after is not None and lost in after}


def clean(consumer, check_mode):
    """Remove one consumer's backup (and those earlier runs left, with earlier); {name, changed}."""
    doomed = [consumer["backup"]] + (files.earlier_backups(consumer) if consumer.get("earlier") else [])
    changed = False
    for path in doomed:
        if check_mode:
            changed = changed or files.read(path) is not None
        else:
            changed = files.remove(path) or changed
    return {"name": consumer["name"], "changed": changed}


def run(module):
    params = module.params
    state, check_mode = params["state"], module.check_mode
    done, problems = [], []
    if state == "written" and params["consumers"] and not check_mode:
        directories = sorted(set(c["backup"].rsplit("/", 1)[0] for c in params["consumers"]))
        try:
            for directory in directories:
                files.make_backup_dir(directory)
        except files.FileProblem as error:
            return {"files": [], "problems": ["nothing was written: %s" % error]}
    for consumer in params["consumers"]:
        try:
            if state == "written":
                done.append(write(consumer, params["keys"], params["contents"], check_mode))
            elif state == "restored":
                done.append(restore(consumer, check_mode))
            elif state == "reverted":
                done.append(revert(consumer, check_mode))
            else:
                done.append(clean(consumer, check_mode))
        except (files.FileProblem, KeyError, ValueError) as error:
            problems.append("%s %s: %s" % (consumer.get("name"), consumer.get("path"), _cause(error)))
            if state == "written":
                break  # the files after it keep the old key; the caller restores those written
    return {"files": done, "problems": problems}


def _cause(error):
    if isinstance(error, KeyError):
        return "the consumer has no %s" % error
    return str(error)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["written", "restored", "reverted", "cleaned"], required=True),
            consumers=dict(type="list", elements="dict", required=True),
            keys=dict(type="dict", default={}, no_log=True),
            contents=dict(type="dict", default={}, no_log=True),
        ),
        supports_check_mode=True,
    )
    result = run(module)
    changed = any(f["changed"] for f in result["files"])
    if result["problems"]:
        module.fail_json(msg="; ".join(result["problems"]), changed=changed, **result)
    module.exit_json(changed=changed, **result)


if __name__ == "__main__":
    main()
