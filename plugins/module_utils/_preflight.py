# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# Internal to rekey.aws: not a public API, may change without notice.
"""Pure logic of the checks run before any AWS call: the role variables and every consumer of
every host, as one list of messages (each names the bad value and what was expected), and the
users the run selects. Plain dicts in and out; no AWS call, no boto3 import."""

import os.path

from ansible_collections.rekey.aws.plugins.module_utils import _consumers
from ansible_collections.rekey.aws.plugins.module_utils._coerce import flag, names, to_json, whole
from ansible_collections.rekey.aws.plugins.module_utils._key_record import USER_NAME_PLACEHOLDER
from ansible_collections.rekey.aws.plugins.module_utils._ssm import parameter_name_problem
from ansible_collections.rekey.aws.plugins.module_utils._keys import KEY_ID_RE

# (role variable, least whole number it may be)
LEAST = (("rotate_max_age_days", 0), ("rotate_prune_unused_days", 0), ("rotate_verify_consecutive", 1),
         ("rotate_verify_timeout_s", 1), ("rotate_idle_window_s", 0), ("rotate_deactivate_settle_s", 0),
         ("rotate_health_interval_s", 1))


# Role variables that are lists, also given as comma-separated strings.
LISTS = ("rotate_users", "rotate_retire_key_ids")

# Set by AWX / Tower (and AAP) in every job they run.
AWX_JOB_VARS = ("awx_job_id", "tower_job_id")
DURABLE_BACKENDS = ("ssm", "secretsmanager")


def normalized(settings):
    """The role variables with every list variable a list."""
    return dict(settings, **dict((name, names(settings.get(name))) for name in LISTS))


def report_path(pattern, run_id, expanduser=os.path.expanduser):
    """rotate_report_path with {run_id} filled in and ~ expanded."""
    return expanduser(pattern.replace("{run_id}", run_id))


def settings_problems(settings, hosts, target_group_hosts, report_path_, expanduser=os.path.expanduser):
    """Problems of the role variables. settings: the rotate_* variables by name; hosts: the hosts
    rotate_hosts matches; target_group_hosts: the hosts already in rotate_target_group;
    report_path_: the report path with the run id filled in and ~ expanded."""
    out = []
    for name, least in LEAST:
        if whole(settings[name]) < least:
            out.append("%s is %s: expected a whole number of at least %d" % (name, settings[name], least))
    if target_group_hosts:
        out.append("rotate_target_group %s already holds hosts (%s): expected a group name the inventory does "
                   "not use, which prepare fills" % (to_json(settings["rotate_target_group"]),
                                                     ", ".join(target_group_hosts)))
    for key_id in settings["rotate_retire_key_ids"]:
        if not isinstance(key_id, str) or not KEY_ID_RE.match(key_id):
            out.append("rotate_retire_key_ids: %s is not an access key id: expected 16-128 upper-case letters and "
                       "digits" % to_json(key_id))
    if (settings["rotate_store_backend"] == "vault_file"
            and not os.path.isabs(expanduser(settings["rotate_store_dir"]))):
        out.append("rotate_store_dir %s is not an absolute path on the controller" % to_json(settings["rotate_store_dir"]))
    if settings["rotate_store_backend"] == "ssm":
        out.extend(parameter_name_problems(settings["rotate_store_parameter_name"]))
    if not os.path.isabs(report_path_):
        out.append("rotate_report_path %s is not an absolute path on the controller"
                   % to_json(settings["rotate_report_path"]))
    if not hosts:
        out.append("rotate_hosts %s matches no host in the inventory" % to_json(settings["rotate_hosts"]))
    return out


def parameter_name_problems(template):
    """Problems of rotate_store_parameter_name: one parameter per user, a name AWS accepts."""
    if not isinstance(template, str) or USER_NAME_PLACEHOLDER not in template:
        return ["rotate_store_parameter_name %s does not contain {user_name}: expected one parameter per user, such "
                "as /rekey/{user_name}" % to_json(template)]
    problem = parameter_name_problem(template.replace(USER_NAME_PLACEHOLDER, "user"))
    return ["rotate_store_parameter_name %s: %s" % (to_json(template), problem)] if problem else []


def job_store_problem(settings, job_vars):
    """The refusal of a vault_file store in an AWX/Tower job, or None. job_vars: the values of
    AWX_JOB_VARS this run has (unset ones missing or None). The job's container, and a store
    under it, is thrown away after the job: a later job could not finish a rotation killed half
    way. rotate_store_dir_outlives_job=true says the directory is on storage that outlives it."""
    if settings["rotate_store_backend"] != "vault_file" or flag(settings.get("rotate_store_dir_outlives_job")):
        return None
    set_ = [(name, job_vars[name]) for name in AWX_JOB_VARS if job_vars.get(name) not in (None, "")]
    if not set_:
        return None
    name, job = set_[0]
    return ("this run is AWX/Tower job %s (%s is set) and rotate_store_backend is vault_file: its store %s is in the "
            "job's container, which is thrown away after the job, so a rotation killed half way could not be "
            "finished by a later job. Use rotate_store_backend=%s (AWS Parameter Store) or "
            "rotate_store_backend=%s (AWS Secrets Manager), or set rotate_store_dir_outlives_job=true when "
            "rotate_store_dir is on storage that outlives the job"
            % (job, name, to_json(settings["rotate_store_dir"]), DURABLE_BACKENDS[0], DURABLE_BACKENDS[1]))


def preflight_problems(settings, hosts, hostvars, consumers_option, target_group_hosts, report_path_, is_file,
                       expanduser=os.path.expanduser, job_vars=None):
    """Every problem found before any AWS call, in this order: the role variables, the shape of
    each host's rotate_consumers, each consumer against the schema, what the schema cannot say,
    users named in rotate_users that no consumer references.

    hostvars: {host: {"rotate_consumers": ..., "inventory_dir": ...}} for the hosts in `hosts`;
    consumers_option: the rotate_consumers option of the role's argument specs; job_vars: the
    AWX_JOB_VARS of the run (see job_store_problem)."""
    out = settings_problems(settings, hosts, target_group_hosts, report_path_, expanduser)
    job_problem = job_store_problem(settings, job_vars or {})
    if job_problem:
        out.append(job_problem)
    consumers = dict((h, hostvars.get(h, {}).get("rotate_consumers", [])) for h in hosts)
    for host in hosts:
        out.extend(_consumers.spec_problems(host, consumers[host]))
    for host in hosts:
        out.extend(_consumers.schema_problems(host, consumers[host], consumers_option))
    for host in hosts:
        out.extend(_consumers.consumer_problems(host, consumers[host], hostvars.get(host, {}).get("inventory_dir"),
                                                is_file))
    out.extend(_consumers.shared_target_problems(hosts, hostvars))
    referenced = _consumers.referenced_users(hosts, hostvars)
    for user in settings["rotate_users"]:
        if user not in referenced:
            out.append("rotate_users names %s but no consumer of the hosts in rotate_hosts (%s) holds its key: known "
                       "users are %s" % (to_json(user), settings["rotate_hosts"], ", ".join(sorted(referenced)) or "none"))
    return out


def selected_users(rotate_users, hosts, hostvars):
    """The users of the run, sorted: rotate_users, or every user a consumer references."""
    return sorted(set(rotate_users or _consumers.referenced_users(hosts, hostvars)))
