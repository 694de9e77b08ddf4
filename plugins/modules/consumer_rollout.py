# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# The work is done by the action plugin of the same name (plugins/action/consumer_rollout.py):
# the controller reads the secret and renders templates; the host runs consumer_files,
# the apply of each service and consumer_health.

DOCUMENTATION = r"""
module: consumer_rollout
short_description: Give the new key to every consumer of one host, or put the host back
version_added: 0.2.0
description:
  - The rollout of one host in one task, used by the role's distribute and finish phases.
  - With O(state=updated), reads each user's new key from the store on the controller, renders the
    consumers' templates there, then on the host backs up and writes every file (each in one atomic
    write), leaves running an app a resumed rotation already put on the new key (proven by one
    health check naming it), restarts, reloads or runs the command of each other app once, and
    runs every health check at the same time. When any of that fails, it restores the files that
    were written, applies them again and checks health on the old key. The result's RV(outcome)
    names the host, consumer, file and cause.
  - With O(state=restored), puts back the files of a host that was updated (from its backups),
    applies those it changed and checks health on the old key.
  - With O(state=reverted), for a resumed rotation whose new key the secret store lost (so no host
    can be given it), puts back the files the killed run wrote from that run's backups, removes
    the files it created, applies those it changed and checks health on the old key; it fails when
    a file still names the lost key, which then must not be deleted.
  - With O(state=checked), runs the health checks on the new key, for example after the old key
    was deactivated.
  - With O(state=prechecked), runs the health checks on whatever key the apps use now, and fails
    when one does not pass, before anything is written - a check that fails now could not prove the
    new key either (a wrong URL or port, an app already down, an unreachable host). A consumer
    whose file does not exist yet is not checked.
  - With O(state=cleaned), removes the backups, which hold the old secret.
  - With O(state=rechecked), after the old keys were deactivated, removes the backups of every
    consumer, as O(state=cleaned) does, then, not before O(check_after), runs the health checks on
    the new key of the consumers whose user's old key is deactivated (phase C(old_deactivated) in
    O(users)). This is the role's re-check, one task per host.
  - In check mode, O(state=updated) previews the host and changes nothing. It reads no secret (no
    new key exists yet), renders the templates and makes each file's would-be content with
    placeholders, and compares it on the host with the file there. RV(preview) says per consumer
    which file would be created or would change and what would be restarted, reloaded or run;
    with C(--diff) the diff shows both sides with every secret masked on the host. The other states
    only read, so they run as they are (O(state=restored), O(state=cleaned) and O(state=rechecked)
    report what they would change).
  - The secret is never in the result, a diff or a file left behind. The host needs no boto3.
author:
  - rekey.aws contributors (@rekey)
extends_documentation_fragment:
  - rekey.aws._attributes
attributes:
  check_mode:
    support: full
    details:
      - With O(state=updated), a preview made with placeholder keys; a file that already holds the
        new key id (a resumed rotation) is not compared on its secret.
  diff_mode:
    support: partial
    details:
      - In check mode only, with O(state=updated), and with every secret masked on both sides.
  idempotent:
    support: full
    details:
      - A file that already holds the new key is not written again, and its app is not restarted
        when its health check proves it runs on the new key.
options:
  consumers:
    description:
      - The consumers of the host, as the role's plan holds them in C(entries) (see the role's
        C(rotate_consumers)), each also with C(host), C(backup) and C(template_src).
      - With O(state=updated), only those whose user's new key is being distributed are written.
    type: list
    elements: dict
    required: true
  state:
    description: What to do, see the description.
    type: str
    choices: [updated, restored, reverted, checked, prechecked, cleaned, rechecked]
    default: updated
  store:
    description:
      - Where the new keys are stored, the options of the P(rekey.aws.stored_key#lookup) lookup.
    type: dict
    default: {}
  existed:
    description:
      - With O(state=restored), which files existed before they were written, by consumer name, as
        RV(outcome.existed) returned it. Files not named are left alone.
    type: dict
    default: {}
  users:
    description:
      - The plan's users by name, whose keys (old, new) each consumer takes. With O(state=updated), a
        resumed rotation whose killed run was
        distributing takes over that run's backups, which hold the files from before the rotation.
        With O(state=cleaned), the backups that killed runs left of resumed rotations are removed too.
    type: dict
    required: true
  interval_s:
    description: Seconds between two tries of a failing health check.
    type: float
    default: 2
  check_after:
    description:
      - With O(state=rechecked), when the health checks may start, in seconds since the epoch on the
        controller's clock (the role passes the time the deactivation has propagated); the task
        waits on the controller until then. V(0) or a time past does not wait.
    type: float
    default: 0
  aws:
    description:
      - The connection options of M(rekey.aws.consumer_aws) (the role's C(rotate_aws)). With
        O(state=updated), a host that fails puts back the parameters and secrets its consumers
        held in AWS read (formats V(ssm_parameter), V(secretsmanager_secret)) before it is applied
        again and checked on the old key. Their new key was written by M(rekey.aws.consumer_aws)
        before; this module writes no value to AWS.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Give this host its new key
  rekey.aws.consumer_rollout:
    consumers: "{{ plan.entries | selectattr('host', 'eq', inventory_hostname) | list }}"
    users: "{{ plan.users }}"
    store:
      backend: vault_file
      path: ~/.rekey-aws/keys/{user_name}.vault
  register: rollout
"""

RETURN = r"""
outcome:
  description: With O(state=updated), what happened on the host.
  returned: when state is updated
  type: dict
  contains:
    status:
      description: V(updated), V(rolled_back), V(failed) (nothing was written) or V(rollback_failed).
      type: str
    phase:
      description: How far it got, V(started), V(writing) or V(checked).
      type: str
    consumers:
      description: The names of the consumers.
      type: list
      elements: str
    existed:
      description:
        - By consumer name, whether its file existed before it was written; a consumer held in AWS
          is named with V(true).
      type: dict
    applied:
      description:
        - The consumers whose service was restarted or reloaded, or whose command ran (not those
          a resumed rotation already put on the new key, nor those with apply none).
      type: list
      elements: str
    failure:
      description: The step that failed (C(task)) and why (C(msg)), naming host, consumer and file.
      type: dict
    rollback:
      description: What could not be put back (empty when the host is back on the old key).
      type: list
      elements: str
preview:
  description: In check mode with O(state=updated), what an update would do on the host.
  returned: in check mode, when state is updated
  type: dict
  contains:
    host:
      description: The host.
      type: str
    consumers:
      description:
        - Per consumer C(consumer), C(iam_user), C(path), C(key) (old key id -> new key id, or
          C(new key (not created in check mode))), C(file) (V(create), V(change), V(keep),
          V(in_aws) for a consumer held in AWS, or V(not previewed)), C(changes), C(diff_lines) (the masked unified diff) and C(apply).
      type: list
      elements: dict
    applies:
      description: What would be restarted, reloaded or run, each once.
      type: list
      elements: str
    problems:
      description: What would fail (an unreachable host, a file that cannot be written).
      type: list
      elements: str
preview_lines:
  description: In check mode with O(state=updated), the preview as lines for a person.
  returned: in check mode, when state is updated
  type: list
  elements: str
problems:
  description: With O(state=restored), O(state=reverted), O(state=cleaned) or O(state=rechecked), what could not be done.
  returned: when state is restored, reverted, cleaned or rechecked
  type: list
  elements: str
health_failures:
  description:
    - With O(state=checked), O(state=prechecked) or O(state=rechecked), the failed checks (host, consumer, iam_user,
      check, got, output).
  returned: when state is checked, prechecked or rechecked
  type: list
  elements: dict
"""
