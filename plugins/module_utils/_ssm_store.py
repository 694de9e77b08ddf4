# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# Internal to rekey.aws: not a public API, may change without notice.

"""The key store's ssm backend: the record of _key_record in an AWS Systems Manager Parameter
Store SecureString, through the calls of _ssm. Parameter Store has no recovery window: a removed
parameter is gone, so it is removed only when it holds the key being removed. Nothing here ever
puts a secret value into an exception message.
"""

from ansible_collections.rekey.aws.plugins.module_utils import _ssm
from ansible_collections.rekey.aws.plugins.module_utils._key_record import (
    KeyStoreError, check_owner, dump_record, make_record, parse_record, same_key)

DEFAULT_PARAMETER_NAME = "/rekey/{user_name}"
SECURE_STRING = "SecureString"


def _location(name):
    return "parameter %r" % name


def _checked_name(name):
    problem = _ssm.parameter_name_problem(name)
    if problem:
        raise KeyStoreError(problem)
    return name


def _get(client, name):
    try:
        return _ssm.get_parameter(client, _checked_name(name))
    except _ssm.SsmError as exc:
        raise KeyStoreError(str(exc)) from None


def _held(client, name, user_name):
    """(parameter or None, its record or None); refuses a parameter holding anything else."""
    parameter = _get(client, name)
    if parameter is None:
        return None, None
    record = parse_record(parameter["value"], _location(name))
    check_owner(record, user_name, _location(name))
    return parameter, record


def read_record(client, name, user_name):
    """The record in parameter name for user_name (one GetParameter call); errors name user and parameter."""
    try:
        parameter, record = _held(client, name, user_name)
    except KeyStoreError as exc:
        raise KeyStoreError("cannot read the stored key of IAM user %r: %s" % (user_name, exc)) from None
    if parameter is None:
        raise KeyStoreError("no stored key for IAM user %r: parameter %r does not exist" % (user_name, name))
    return record


def store(client, name, user_name, access_key_id, secret_access_key, kms_key_id=None, check_mode=False):
    """Make parameter name a SecureString holding this key (a String holding it is rewritten as a
    SecureString). Returns (changed, the parameter's name or None when check mode would create it,
    the key id held before or None)."""
    parameter, record = _held(client, name, user_name)
    previous_id = record["access_key_id"] if record else None
    if (parameter is not None and parameter["type"] == SECURE_STRING
            and same_key(record, user_name, access_key_id, secret_access_key)):
        return False, name, previous_id
    if check_mode:
        return True, name if parameter else None, previous_id
    payload = dump_record(make_record(user_name, access_key_id, secret_access_key))
    try:
        _ssm.put_secure_string(client, name, payload, kms_key_id=kms_key_id,
                               description="rekey.aws: IAM access key of user %s" % user_name,
                               overwrite=parameter is not None)
    except _ssm.SsmError as exc:
        raise KeyStoreError(str(exc)) from None
    return True, name, previous_id


def remove(client, name, user_name, access_key_id=None, check_mode=False):
    """Delete parameter name (no recovery window). With access_key_id, only when it holds that key.

    Returns (changed, the parameter's name or None when missing, the access key id that was stored or None)."""
    parameter, record = _held(client, name, user_name)
    if parameter is None:
        return False, None, None
    stored_id = record["access_key_id"]
    if access_key_id is not None and stored_id != access_key_id:
        return False, name, stored_id
    if check_mode:
        return True, name, stored_id
    try:
        _ssm.delete_parameter(client, name)
    except _ssm.SsmError as exc:
        raise KeyStoreError(str(exc)) from None
    return True, name, stored_id
