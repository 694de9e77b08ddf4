# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# Internal to rekey.aws: not a public API, may change without notice.

"""Every AWS Systems Manager Parameter Store call rekey.aws makes: the key store's ssm backend and
the ssm_parameter consumer. Values are SecureString only. Nothing here ever puts a parameter's
value into an exception message.
"""

import re

try:
    from botocore.exceptions import BotoCoreError, ClientError
    HAS_BOTOCORE = True
except ImportError:
    HAS_BOTOCORE = False  # the callers report the missing dependency

MAX_NAME_LENGTH = 1011  # a fully qualified name, as AWS counts it
MAX_LEVELS = 15
NAME_RE = re.compile(r"\A[A-Za-z0-9_.\-/]+\Z", re.ASCII)
RESERVED_PREFIXES = ("aws", "ssm")


class SsmError(Exception):
    """A Parameter Store call failed; the message names the action and the parameter, never a value."""


def parameter_name_problem(name):
    """A message naming a bad parameter name and what is expected, or None (AWS's rules for
    names: letters, digits and _.-/, at most 1011 characters and 15 levels, not under aws or ssm)."""
    if not isinstance(name, str) or not name:
        return "parameter name %r: expected a non-empty string such as /rekey/app" % (name,)
    if len(name) > MAX_NAME_LENGTH:
        return "parameter name %r is %d characters long: at most %d" % (name[:40] + "...", len(name), MAX_NAME_LENGTH)
    if not NAME_RE.match(name):
        return "parameter name %r: expected only letters, digits and _.-/" % (name,)
    if "//" in name or (name.endswith("/") and name != "/"):
        return "parameter name %r has an empty level: expected levels separated by single slashes" % (name,)
    if "/" in name.lstrip("/") and not name.startswith("/"):
        return "parameter name %r has levels but does not start with /: expected /%s" % (name, name)
    levels = name.strip("/").split("/")
    if len(levels) > MAX_LEVELS:
        return "parameter name %r has %d levels: at most %d" % (name, len(levels), MAX_LEVELS)
    if levels[0].lower().startswith(RESERVED_PREFIXES):
        return "parameter name %r starts with aws or ssm, which AWS reserves: choose another first level" % (name,)
    return None


def _error(action, name, exc):
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "Unknown")
        message = " ".join(str(error.get("Message", "")).split())
        hint = ""
        if code in ("AccessDeniedException", "AccessDenied"):
            hint = " (the caller needs ssm:%s on this parameter)" % action
        elif code.startswith("KMS") or "kms" in message.lower():
            hint = " (the caller needs kms:Encrypt and kms:Decrypt on the parameter's KMS key)"
        return SsmError("ssm:%s on parameter %r failed: %s: %s%s" % (action, name, code, message, hint))
    return SsmError("ssm:%s on parameter %r failed: %s" % (action, name, exc))


def _code(exc):
    return exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else None


def get_parameter(client, name):
    """{"value", "type", "version"} of the parameter (decrypted), or None when it does not exist."""
    try:
        response = client.get_parameter(Name=name, WithDecryption=True)
    except (BotoCoreError, ClientError) as exc:
        if _code(exc) == "ParameterNotFound":
            return None
        raise _error("GetParameter", name, exc) from None
    parameter = response["Parameter"]
    return {"value": parameter["Value"], "type": parameter["Type"], "version": parameter["Version"]}


def get_parameter_version(client, name, version):
    """{"value", "type", "version"} of one version of the parameter (decrypted), or None when the
    parameter or that version does not exist (a name:version selector, one GetParameter call)."""
    selector = "%s:%d" % (name, int(version))
    try:
        response = client.get_parameter(Name=selector, WithDecryption=True)
    except (BotoCoreError, ClientError) as exc:
        if _code(exc) in ("ParameterNotFound", "ParameterVersionNotFound"):
            return None
        raise _error("GetParameter", selector, exc) from None
    parameter = response["Parameter"]
    return {"value": parameter["Value"], "type": parameter["Type"], "version": parameter["Version"]}


def put_secure_string(client, name, value, kms_key_id=None, description=None, tags=None, overwrite=True):
    """Write value as a SecureString; returns the new version. AWS refuses tags together with
    Overwrite, so tags are sent only when creating (overwrite=False)."""
    kwargs = {"Name": name, "Value": value, "Type": "SecureString", "Overwrite": bool(overwrite)}
    if kms_key_id:
        kwargs["KeyId"] = kms_key_id
    if description:
        kwargs["Description"] = description
    if tags and not overwrite:
        kwargs["Tags"] = [{"Key": k, "Value": v} for k, v in sorted(tags.items())]
    try:
        return client.put_parameter(**kwargs)["Version"]
    except (BotoCoreError, ClientError) as exc:
        raise _error("PutParameter", name, exc) from None


def delete_parameter(client, name):
    """Delete the parameter; False when it did not exist."""
    try:
        client.delete_parameter(Name=name)
    except (BotoCoreError, ClientError) as exc:
        if _code(exc) == "ParameterNotFound":
            return False
        raise _error("DeleteParameter", name, exc) from None
    return True
