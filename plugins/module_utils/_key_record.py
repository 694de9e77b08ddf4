# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# Internal to rekey.aws: not a public API, may change without notice.

"""The stored-key record every key store backend holds (the Vault-encrypted file, the Secrets
Manager secret, the Parameter Store SecureString): JSON
``{"user_name", "access_key_id", "secret_access_key", "stored_at"}``, and the checks made before a
record is returned or overwritten. Pure: no AWS call. Nothing here ever puts a secret value into
an exception message.
"""

import datetime
import json
import re

USER_NAME_PLACEHOLDER = "{user_name}"
# IAM's own rule for user names; it also keeps {user_name} from escaping a directory.
USER_NAME_RE = re.compile(r"\A[\w+=,.@-]{1,64}\Z", re.ASCII)


class KeyStoreError(Exception):
    """A store could not be read or written; the message names the location, never a secret."""


def user_name_problem(user_name):
    """A message naming a bad IAM user name, or None."""
    if not isinstance(user_name, str) or not USER_NAME_RE.match(user_name):
        return "user name %r is not an IAM user name: expected 1 to 64 letters, digits or +=,.@_-" % (user_name,)
    if not user_name.strip("."):
        return "user name %r is refused: in a path it would name a directory" % user_name
    return None


def expand_location(template, user_name):
    """Substitute {user_name} in a path or secret name (plain replace: other braces stay)."""
    return template.replace(USER_NAME_PLACEHOLDER, user_name)


def make_record(user_name, access_key_id, secret_access_key, now=None):
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return {
        "user_name": user_name,
        "access_key_id": access_key_id,
        "secret_access_key": secret_access_key,
        "stored_at": now.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def dump_record(record):
    return json.dumps(record, sort_keys=True)


def parse_record(text, location):
    """The record held at location, validated; raises KeyStoreError without quoting the content."""
    try:
        record = json.loads(text)
    except ValueError:
        raise KeyStoreError("%s does not hold a rekey.aws key record (not JSON)" % location) from None
    if not isinstance(record, dict):
        raise KeyStoreError("%s does not hold a rekey.aws key record (not a JSON object)" % location)
    missing = [name for name in ("user_name", "access_key_id", "secret_access_key")
               if not isinstance(record.get(name), str) or not record.get(name)]
    if missing:
        raise KeyStoreError("%s does not hold a rekey.aws key record (missing or empty: %s)"
                            % (location, ", ".join(missing)))
    return record


def same_key(record, user_name, access_key_id, secret_access_key):
    """Whether record already holds exactly this key (stored_at does not matter)."""
    return (record.get("user_name") == user_name
            and record.get("access_key_id") == access_key_id
            and record.get("secret_access_key") == secret_access_key)


def check_owner(record, user_name, location):
    """A store holding another user's key is a configuration error: never overwrite or return it."""
    if record["user_name"] != user_name:
        raise KeyStoreError("%s holds the key of IAM user %r, not %r: give each user its own location "
                            "(use {user_name} in it)" % (location, record["user_name"], user_name))
