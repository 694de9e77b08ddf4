# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# Internal to rekey.aws: not a public API, may change without notice.
"""Pure logic about consumers (what on a host holds a key, inventory data in rotate_consumers):
their defaults, the checks run on them before any write, and the IAM users they reference.
Plain dicts in and out; no AWS call, no boto3 import, no file read (the caller passes is_file)."""

import os.path
import re

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.rekey.aws.plugins.module_utils._coerce import to_json, whole
from ansible_collections.rekey.aws.plugins.module_utils._ssm import parameter_name_problem

DEFAULTS = {
    "format": "credentials",
    "profile": "default",
    "env_names": {"access_key_id": "AWS_ACCESS_KEY_ID", "secret_access_key": "AWS_SECRET_ACCESS_KEY"},
    "template": "",
    "parameter": "",
    "secret_id": "",
    "kms_key_id": "",
    "access_key_id_field": "aws_access_key_id",
    "secret_access_key_field": "aws_secret_access_key",
    "mode": "0600",
    "apply": "restart",
    "service": "",
    "apply_command": "",
    "health_url": "",
    "health_status": 200,
    "health_expect_key_id": False,
    "health_command": "",
    "health_timeout_s": 30,
}

# re.match, as the role's `match` test: `$` also matches before a final newline.
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_MODE_RE = re.compile(r"^0?[0246]00$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_URL_RE = re.compile(r"https?://")
# Secrets Manager's rule for a secret name (an ARN is accepted as well).
_SECRET_ID_RE = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}$")
_SECRET_ARN_RE = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]{1,512}$")
_FIELD_MAX = 256

# Formats whose key is held in an AWS service: written once from the controller, not on the hosts.
AWS_FORMATS = ("ssm_parameter", "secretsmanager_secret")


def held_in_aws(consumer):
    """Whether a consumer's key is held in SSM Parameter Store or Secrets Manager (no file)."""
    return consumer.get("format") in AWS_FORMATS


def aws_target(consumer):
    """(format, name) of the parameter or secret an AWS-held consumer names: consumers of any host
    naming the same one share one write."""
    if consumer["format"] == "ssm_parameter":
        return ("ssm_parameter", consumer.get("parameter") or "")
    return ("secretsmanager_secret", consumer.get("secret_id") or "")


def with_defaults(raw):
    """A consumer with every default filled in (a shallow merge: an env_names given replaces the
    default one whole)."""
    consumer = dict(DEFAULTS, env_names=dict(DEFAULTS["env_names"]))
    consumer.update(raw)
    return consumer


def consumer_list(value):
    """rotate_consumers as the checks read it: a list, or [] when it is not one (spec_problems says
    so)."""
    return list(value) if isinstance(value, (list, tuple)) else []


def mappings(value):
    """(index in rotate_consumers, consumer) of every consumer that is a mapping."""
    return [(i, c) for i, c in enumerate(consumer_list(value)) if isinstance(c, dict)]


def where(host, index, consumer):
    """How messages name a consumer: host, name and index in rotate_consumers."""
    return "host %s, consumer %s (rotate_consumers[%d])" % (host, to_json(consumer.get("name", "")), index)


def spec_problems(host, value):
    """Problems of a host's rotate_consumers as a whole (it must be a list of mappings), each
    prefixed with the host."""
    result = ArgumentSpecValidator({"rotate_consumers": {"type": "list", "elements": "dict"}}).validate(
        {"rotate_consumers": value})
    return ["host %s: %s" % (host, m) for m in result.error_messages]


def schema(consumers_option):
    """The schema one consumer is checked against, from the rotate_consumers option of the role's
    argument specs (its `elements` and `default` dropped, type dict)."""
    spec = dict((k, v) for k, v in consumers_option.items() if k not in ("elements", "default"))
    spec["type"] = "dict"
    return spec


def schema_problems(host, value, consumers_option):
    """Problems of each consumer of a host against the consumer schema (rotate_consumers in
    meta/argument_specs.yml), each prefixed with where()."""
    validator = ArgumentSpecValidator({"rotate_consumer": schema(consumers_option)})
    out = []
    for index, raw in mappings(value):
        result = validator.validate({"rotate_consumer": raw})
        out.extend("%s: %s" % (where(host, index, raw), m) for m in result.error_messages)
    return out


def template_source(template, inventory_dir):
    """The controller path of a consumer's template: a relative one is relative to the directory
    of the inventory that defines the host ('.' when unknown)."""
    if os.path.isabs(template):
        return template
    return "%s/%s" % ("." if inventory_dir is None else inventory_dir, template)


def location(consumer):
    """Where a consumer holds its key, for messages: its file, or its parameter or secret."""
    if held_in_aws(consumer):
        return "%s %s" % aws_target(consumer)
    return consumer.get("path")


def _name_problems(where_, c, seen):
    name = c.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        return ['%s: name %s is not valid: expected letters, digits, ".", "_" or "-"' % (where_, to_json(name))]
    if name in seen:
        return ["%s: name %s is used twice on this host: expected unique names" % (where_, to_json(name))]
    seen.append(name)
    return []


def _file_problems(where_, c):
    out = []
    if held_in_aws(c):
        return out
    path = c.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        out.append("%s: path %s is not an absolute path on the host" % (where_, to_json(path)))
    mode = c["mode"]
    if not isinstance(mode, str):
        out.append('%s: mode %s is not a quoted octal string: write it as "0600" (YAML reads an unquoted 0600 as '
                   'the number 384)' % (where_, to_json(mode)))
    elif not _MODE_RE.match(mode):
        out.append('%s: mode %s is not allowed for a file holding a secret: expected at most "0600" (owner '
                   'read/write only)' % (where_, to_json(mode)))
    return out


def _format_problems(where_, c, inventory_dir, is_file):
    out = []
    if c["format"] == "env":
        names = c["env_names"] if isinstance(c["env_names"], dict) else {}
        for field in ("access_key_id", "secret_access_key"):
            value = names.get(field)
            if not isinstance(value, str) or not _ENV_NAME_RE.match(value):
                out.append("%s: env_names.%s %s is not a valid variable name" % (where_, field, to_json(value)))
    elif c["format"] == "template":
        if not c["template"]:
            out.append("%s: format template needs template: expected the controller path of a Jinja template"
                       % where_)
        else:
            src = template_source(c["template"], inventory_dir)
            if not is_file(src):
                out.append("%s: template %s is not a file on the controller (looked for %s)"
                           % (where_, to_json(c["template"]), src))
    return out


def _aws_problems(where_, c):
    out = []
    if c["format"] == "ssm_parameter":
        problem = parameter_name_problem(c["parameter"])
        if problem:
            out.append("%s: format ssm_parameter needs parameter: %s" % (where_, problem))
    elif not isinstance(c["secret_id"], str) or not (
            _SECRET_ID_RE.match(c["secret_id"]) or _SECRET_ARN_RE.match(c["secret_id"])):
        out.append("%s: format secretsmanager_secret needs secret_id: %s is not a secret name or ARN (expected 1 "
                   "to 512 letters, digits or /_+=.@-)" % (where_, to_json(c["secret_id"])))
    if c["format"] == "secretsmanager_secret" and c["kms_key_id"]:
        out.append("%s: kms_key_id applies to format ssm_parameter only: a secret keeps the KMS key it was created "
                   "with" % where_)
    elif not isinstance(c["kms_key_id"], str):
        out.append("%s: kms_key_id %s is not a string: expected a KMS key id, ARN or alias" % (where_, to_json(c["kms_key_id"])))
    fields = []
    for option in ("access_key_id_field", "secret_access_key_field"):
        value = c[option]
        if not isinstance(value, str) or not value.strip() or len(value) > _FIELD_MAX:
            out.append("%s: %s %s is not valid: expected a JSON field name of 1 to %d characters"
                       % (where_, option, to_json(value), _FIELD_MAX))
        fields.append(value)
    if fields[0] == fields[1]:
        out.append("%s: access_key_id_field and secret_access_key_field are both %s: expected two different field "
                   "names" % (where_, to_json(fields[0])))
    return out


def _apply_problems(where_, c):
    if c["apply"] in ("restart", "reload") and not c["service"]:
        return ["%s: apply %s needs service: expected the service name" % (where_, c["apply"])]
    if c["apply"] == "command" and not c["apply_command"]:
        return ["%s: apply command needs apply_command: expected the command to run" % where_]
    return []


def _health_problems(where_, c):
    out = []
    if not c["health_url"] and not c["health_command"]:
        out.append("%s: no health check: expected health_url, health_command or both" % where_)
    elif c["health_url"] and not (isinstance(c["health_url"], str) and _URL_RE.match(c["health_url"])):
        out.append("%s: health_url %s is not an http:// or https:// URL" % (where_, to_json(c["health_url"])))
    if whole(c["health_timeout_s"]) < 1:
        out.append("%s: health_timeout_s %s is not valid: expected at least 1 second"
                   % (where_, to_json(c["health_timeout_s"])))
    return out


def consumer_problems(host, value, inventory_dir, is_file):
    """What the schema cannot say about the consumers of one host: names valid and unique on the
    host, an IAM user, an absolute path and a mode no wider than 0600 (formats with a file), what
    each format and apply method needs (a valid parameter or secret name and two distinct field
    names for the formats held in AWS), a health check. is_file(path) says whether a template exists on the controller."""
    out = []
    seen = []
    for index, raw in mappings(value):
        c = with_defaults(raw)
        where_ = where(host, index, c)
        out.extend(_name_problems(where_, c, seen))
        if not isinstance(c.get("iam_user"), str) or not c["iam_user"]:
            out.append("%s: iam_user is missing: expected the IAM user whose key it holds" % where_)
        out.extend(_file_problems(where_, c))
        out.extend(_format_problems(where_, c, inventory_dir, is_file))
        if held_in_aws(c):
            out.extend(_aws_problems(where_, c))
        out.extend(_apply_problems(where_, c))
        out.extend(_health_problems(where_, c))
    return out


def shared_target_problems(hosts, hostvars):
    """Consumers of any hosts naming the same parameter or secret must agree on what it holds: the
    IAM user, the two field names and the KMS key (it is written once for all of them)."""
    first = {}
    out = []
    for host in hosts:
        for index, raw in mappings(hostvars.get(host, {}).get("rotate_consumers")):
            c = with_defaults(raw)
            if not held_in_aws(c):
                continue
            target = aws_target(c)
            fields = ("iam_user", "access_key_id_field", "secret_access_key_field", "kms_key_id")
            held = dict((k, c.get(k)) for k in fields)
            if target not in first:
                first[target] = (where(host, index, c), held)
                continue
            where_first, held_first = first[target]
            for k in sorted(held):
                if held[k] != held_first[k]:
                    out.append("%s: %s %s holds %s %s, but %s says %s: consumers sharing a %s must agree"
                               % (where(host, index, c), target[0], to_json(target[1]), k, to_json(held[k]),
                                  where_first, to_json(held_first[k]), "parameter" if target[0] == "ssm_parameter"
                                  else "secret"))
    return out


def referenced_users(hosts, hostvars):
    """Every IAM user a consumer of these hosts names (a non-empty string), in order of first
    appearance."""
    out = []
    for host in hosts:
        for _index, c in mappings(hostvars.get(host, {}).get("rotate_consumers")):
            user = c.get("iam_user")
            if isinstance(user, str) and user and user not in out:
                out.append(user)
    return out
