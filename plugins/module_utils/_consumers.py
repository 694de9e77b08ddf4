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

DEFAULTS = {
    "format": "credentials",
    "profile": "default",
    "env_names": {"access_key_id": "AWS_ACCESS_KEY_ID", "secret_access_key": "AWS_SECRET_ACCESS_KEY"},
    "template": "",
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
    host, an IAM user, an absolute path, a mode no wider than 0600, what each format and apply
    method needs, a health check. is_file(path) says whether a template exists on the controller."""
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
        out.extend(_apply_problems(where_, c))
        out.extend(_health_problems(where_, c))
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
