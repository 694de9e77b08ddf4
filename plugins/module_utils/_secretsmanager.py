# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# Internal to rekey.aws: not a public API, may change without notice.

"""Every AWS Secrets Manager call the key store makes, and its secretsmanager backend. The record
it keeps is _key_record's (every backend holds the same JSON). Nothing here ever puts a secret
value into an exception message.
"""

try:
    from botocore.exceptions import BotoCoreError, ClientError
    HAS_BOTOCORE = True
except ImportError:
    HAS_BOTOCORE = False  # the callers report the missing dependency

from ansible_collections.rekey.aws.plugins.module_utils._key_record import (
    KeyStoreError, check_owner, dump_record, make_record, parse_record, same_key)

RECOVERY_WINDOW_DAYS = 7


def default_secret_name(user_name):
    return "rekey/" + user_name


def _error(action, name, exc):
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "Unknown")
        message = " ".join(str(error.get("Message", "")).split())
        hint = ""
        if code in ("AccessDeniedException", "AccessDenied"):
            hint = " (the caller needs secretsmanager:%s on this secret)" % action
        return KeyStoreError("secretsmanager:%s on %r failed: %s: %s%s" % (action, name, code, message, hint))
    return KeyStoreError("secretsmanager:%s on %r failed: %s" % (action, name, exc))


def _call(action, name, method, **kwargs):
    try:
        return method(**kwargs)
    except (BotoCoreError, ClientError) as exc:
        raise _error(action, name, exc) from None


def _not_found(exc):
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException"


def describe_secret(client, name):
    """The secret's metadata, or None when no secret has this name."""
    try:
        return client.describe_secret(SecretId=name)
    except ClientError as exc:
        if _not_found(exc):
            return None
        raise _error("DescribeSecret", name, exc) from None
    except BotoCoreError as exc:
        raise _error("DescribeSecret", name, exc) from None


def is_scheduled_for_deletion(description):
    return bool(description and description.get("DeletedDate"))


def get_secret_string(client, name):
    """The current SecretString, or None when the secret does not exist."""
    try:
        response = client.get_secret_value(SecretId=name)
    except ClientError as exc:
        if _not_found(exc):
            return None
        raise _error("GetSecretValue", name, exc) from None
    except BotoCoreError as exc:
        raise _error("GetSecretValue", name, exc) from None
    if "SecretString" not in response:
        raise KeyStoreError("secret %r holds binary data, not a rekey.aws key record" % name)
    return response["SecretString"]


def get_secret_version(client, name, stage):
    """{"value", "version_id"} of the SecretString at a staging label (AWSCURRENT, AWSPREVIOUS),
    or None when the secret or that label does not exist."""
    try:
        response = client.get_secret_value(SecretId=name, VersionStage=stage)
    except ClientError as exc:
        if _not_found(exc):
            return None
        raise _error("GetSecretValue", name, exc) from None
    except BotoCoreError as exc:
        raise _error("GetSecretValue", name, exc) from None
    if "SecretString" not in response:
        raise KeyStoreError("secret %r holds binary data at %s, not a JSON object" % (name, stage))
    return {"value": response["SecretString"], "version_id": response.get("VersionId")}


def create_secret(client, name, secret_string, description, kms_key_id=None):
    kwargs = {"Name": name, "SecretString": secret_string, "Description": description}
    if kms_key_id:
        kwargs["KmsKeyId"] = kms_key_id
    return _call("CreateSecret", name, client.create_secret, **kwargs)["ARN"]


def put_secret_string(client, name, secret_string):
    return _call("PutSecretValue", name, client.put_secret_value, SecretId=name, SecretString=secret_string)["ARN"]


def restore_secret(client, name):
    return _call("RestoreSecret", name, client.restore_secret, SecretId=name)["ARN"]


def schedule_deletion(client, name):
    """Delete with the recovery window, never ForceDeleteWithoutRecovery."""
    return _call("DeleteSecret", name, client.delete_secret, SecretId=name,
                 RecoveryWindowInDays=RECOVERY_WINDOW_DAYS)["ARN"]


def read_record(client, name, user_name):
    """The record in secret name for user_name (one GetSecretValue call); errors name user and secret."""
    try:
        text = get_secret_string(client, name)
    except KeyStoreError as exc:
        raise KeyStoreError("cannot read the stored key of IAM user %r: %s" % (user_name, exc)) from None
    if text is None:
        raise KeyStoreError("no stored key for IAM user %r: secret %r does not exist" % (user_name, name))
    record = parse_record(text, "secret %r" % name)
    check_owner(record, user_name, "secret %r" % name)
    return record


def store(client, name, user_name, access_key_id, secret_access_key, kms_key_id=None, check_mode=False):
    """Make secret name hold this key.

    Returns (changed, arn or None when check mode would create it, the key id held before or None).
    """
    description = describe_secret(client, name)
    location = "secret %r" % name
    previous_id = None
    if description is not None and not is_scheduled_for_deletion(description):
        current = get_secret_string(client, name)
        if current is not None:
            record = parse_record(current, location)
            check_owner(record, user_name, location)
            previous_id = record["access_key_id"]
            if same_key(record, user_name, access_key_id, secret_access_key):
                return False, description["ARN"], previous_id
    if check_mode:
        return True, description["ARN"] if description else None, previous_id
    payload = dump_record(make_record(user_name, access_key_id, secret_access_key))
    if description is None:
        arn = create_secret(client, name, payload, "rekey.aws: IAM access key of user %s" % user_name,
                            kms_key_id=kms_key_id)
        return True, arn, previous_id
    if is_scheduled_for_deletion(description):
        restore_secret(client, name)
    return True, put_secret_string(client, name, payload), previous_id


def remove(client, name, user_name, access_key_id=None, check_mode=False):
    """Schedule secret name for deletion. With access_key_id, only when it holds that key.

    Returns (changed, arn or None, the access key id that was stored or None).
    """
    description = describe_secret(client, name)
    if description is None:
        return False, None, None
    if is_scheduled_for_deletion(description):
        return False, description["ARN"], None
    location = "secret %r" % name
    current = get_secret_string(client, name)
    stored_id = None
    if current is not None:
        record = parse_record(current, location)
        check_owner(record, user_name, location)
        stored_id = record["access_key_id"]
    if access_key_id is not None and stored_id != access_key_id:
        return False, description["ARN"], stored_id
    if check_mode:
        return True, description["ARN"], stored_id
    return True, schedule_deletion(client, name), stored_id
