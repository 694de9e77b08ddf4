# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# Internal to rekey.aws: not a public API, may change without notice.
"""Every IAM and STS call of the collection, and the mapping of their errors to IamError."""

import datetime

from ansible_collections.rekey.aws.plugins.module_utils import _connection
from ansible_collections.rekey.aws.plugins.module_utils._keys import last_use_fields, normalize_key, sort_keys

try:
    import botocore.exceptions
except ImportError:
    pass  # the modules check _connection.HAS_BOTO3 before calling anything here

REFUSED_CODES = frozenset((
    "InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException",
    "UnrecognizedClientException", "InvalidSignatureException", "InvalidAccessKeyId", "AuthFailure",
    "IncompleteSignature",
))
STS_TIMEOUT_S = 10
DENIED_CODES = frozenset(("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"))
THROTTLING_CODES = frozenset(("Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"))


class IamError(Exception):
    """An AWS call failed. message is meant for the user; code is AWS's error code (or botocore's
    exception name); action is the API action, e.g. iam:CreateAccessKey."""

    def __init__(self, message, code=None, action=None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.action = action

    def __str__(self):
        return self.message


def map_error(exc, action, user_name=None, key_id=None, credentials=None):
    """The IamError for an exception raised by botocore while calling action.

    credentials: a callable describing where the credentials came from (only asked when AWS
    refused them)."""
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code") or "Unknown"
        text = error.get("Message") or str(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        attempts = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) + 1
        return IamError(_client_error_message(code, text, status, attempts, action, user_name, key_id, credentials),
                        code, action)
    code = type(exc).__name__
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        message = ("%s: no AWS credentials found: set access_key and secret_key (or the AWS_ACCESS_KEY_ID and "
                   "AWS_SECRET_ACCESS_KEY environment variables), a profile, or run where an instance or "
                   "container role is available" % action)
    elif isinstance(exc, botocore.exceptions.ProfileNotFound):
        message = "%s: %s: check the profile option or AWS_PROFILE" % (action, exc)
    elif isinstance(exc, botocore.exceptions.EndpointConnectionError):
        message = "%s: could not connect to AWS: %s" % (action, exc)
    else:
        message = "%s failed: %s: %s" % (action, code, exc)
    return IamError(message, code, action)


def _client_error_message(code, text, status, attempts, action, user_name, key_id, credentials):
    if code == "NoSuchEntity":
        if key_id:
            return "access key '%s' does not exist for IAM user '%s' (%s: %s)" % (key_id, user_name, action, text)
        if user_name:
            return "IAM user '%s' does not exist" % user_name
    if code in REFUSED_CODES:
        who = credentials() if credentials else "unknown source"
        return ("AWS refused the credentials this module used (%s) on %s: %s: %s. Check the module's "
                "access_key/secret_key/session_token/profile options and the AWS_* environment variables."
                % (who, action, code, text.rstrip(".")))
    if code in DENIED_CODES:
        target = " on IAM user '%s'" % user_name if user_name else ""
        return "access denied: the module's credentials may not call %s%s: %s" % (action, target, text)
    if code == "LimitExceeded":
        target = " for IAM user '%s'" % user_name if user_name else ""
        return "%s%s failed: LimitExceeded: %s" % (action, target, text)
    if code in THROTTLING_CODES:
        return ("%s was still throttled after %d attempts (%s): raise the retries option or run fewer "
                "calls at once" % (action, attempts, code))
    if status and status >= 500:
        return "%s failed with HTTP %s %s after %d attempts: %s" % (action, status, code, attempts, text)
    return "%s failed: %s: %s" % (action, code, text)


def _aws_errors():
    return (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


class Iam:
    """IAM calls with the module's (admin) credentials."""

    def __init__(self, client, credentials=None, now=None):
        self.client = client
        self._credentials = credentials
        self._now = now or (lambda: datetime.datetime.now(datetime.timezone.utc))

    @classmethod
    def connect(cls, params):
        try:
            session, client = _connection.shared_client("iam", params, params["retries"])
        except _aws_errors() as exc:
            raise map_error(exc, "iam:connect") from None
        return cls(client, credentials=lambda: _connection.credential_source(params, session))

    def _call(self, action, method, user_name=None, key_id=None, **kwargs):
        try:
            return getattr(self.client, method)(**kwargs)
        except _aws_errors() as exc:
            raise map_error(exc, "iam:" + action, user_name=user_name, key_id=key_id,
                            credentials=self._credentials) from None

    def list_users(self):
        users = []
        try:
            for page in self.client.get_paginator("list_users").paginate():
                users.extend(u["UserName"] for u in page.get("Users", []))
        except _aws_errors() as exc:
            raise map_error(exc, "iam:ListUsers", credentials=self._credentials) from None
        return sorted(users)

    def user_keys(self, user_name, missing_ok=False, last_used="all"):
        """The user's keys in the shared shape; [] for a missing user if missing_ok.

        last_used: "all" reads every key's last use (one GetAccessKeyLastUsed each); "decisive" only
        when the user has more than one key (a single key's last use decides nothing in a plan:
        nothing is pruned or discarded beside it); with "decisive" a key not read has
        last_used_read false."""
        metadata = []
        try:
            for page in self.client.get_paginator("list_access_keys").paginate(UserName=user_name):
                metadata.extend(page.get("AccessKeyMetadata", []))
        except _aws_errors() as exc:
            error = map_error(exc, "iam:ListAccessKeys", user_name=user_name, credentials=self._credentials)
            if missing_ok and error.code == "NoSuchEntity":
                return []
            raise error from None
        now = self._now()
        metadata.sort(key=lambda m: m["CreateDate"])  # full precision: the shape keeps only seconds
        if last_used == "all" or len(metadata) > 1:
            return sort_keys([normalize_key(m, self.last_used(m["AccessKeyId"], user_name), now) for m in metadata])
        return sort_keys([dict(normalize_key(m, None, now), last_used_read=False) for m in metadata])

    def last_used(self, key_id, user_name=None):
        answer = self._call("GetAccessKeyLastUsed", "get_access_key_last_used", user_name=user_name,
                            key_id=key_id, AccessKeyId=key_id)
        return answer.get("AccessKeyLastUsed") or {}

    def key_last_use(self, key_id):
        """{access_key_id, user_name, last_used_date, last_used_service, last_used_region} of one
        key (one GetAccessKeyLastUsed, no listing)."""
        answer = self._call("GetAccessKeyLastUsed", "get_access_key_last_used", key_id=key_id, AccessKeyId=key_id)
        use = last_use_fields(answer.get("AccessKeyLastUsed"))
        return dict(use, access_key_id=key_id, user_name=answer.get("UserName"))

    def create_key(self, user_name):
        """(key in the shared shape, secret)."""
        answer = self._call("CreateAccessKey", "create_access_key", user_name=user_name, UserName=user_name)
        created = answer["AccessKey"]
        return normalize_key(created, None, self._now()), created["SecretAccessKey"]

    def set_status(self, user_name, key_id, status):
        self._call("UpdateAccessKey", "update_access_key", user_name=user_name, key_id=key_id,
                   UserName=user_name, AccessKeyId=key_id, Status=status)

    def delete_key(self, user_name, key_id):
        """True when deleted, False when it was already gone."""
        try:
            self._call("DeleteAccessKey", "delete_access_key", user_name=user_name, key_id=key_id,
                       UserName=user_name, AccessKeyId=key_id)
        except IamError as error:
            if error.code == "NoSuchEntity":
                return False
            raise
        return True

    def user_tags(self, user_name, missing_ok=False):
        """Every tag of the user, [{"Key": ..., "Value": ...}] (ListUserTags, paginated); None for a
        missing user if missing_ok."""
        tags = []
        try:
            for page in self.client.get_paginator("list_user_tags").paginate(UserName=user_name):
                tags.extend(page.get("Tags", []))
        except _aws_errors() as exc:
            error = map_error(exc, "iam:ListUserTags", user_name=user_name, credentials=self._credentials)
            if missing_ok and error.code == "NoSuchEntity":
                return None
            raise error from None
        return tags

    def tag_user(self, user_name, tags):
        """Set tags ({key: value}) on the user; other tags are left alone."""
        self._call("TagUser", "tag_user", user_name=user_name, UserName=user_name,
                   Tags=[{"Key": k, "Value": v} for k, v in sorted(tags.items())])

    def untag_user(self, user_name, keys):
        """Remove the tags with these keys from the user; keys it does not have are ignored by IAM."""
        self._call("UntagUser", "untag_user", user_name=user_name, UserName=user_name, TagKeys=list(keys))


def sts_for_key(key, params):
    """An STS client that holds only this key (never the admin key, a profile or the environment's),
    with botocore's retries off: the caller's own loop decides what to do with each answer."""
    try:
        session = _connection.key_session(key["access_key_id"], key["secret_access_key"], key.get("session_token"),
                                          params.get("region"))
        return _connection.client(session, "sts", params, retries=0, timeout=STS_TIMEOUT_S)
    except _aws_errors() as exc:
        raise map_error(exc, "sts:connect") from None


def caller_identity(sts):
    """(outcome, detail) for one GetCallerIdentity call: ("authenticated", arn), ("refused", code) or
    ("inconclusive", code) for answers that say nothing about the key (throttling, 5xx, network)."""
    try:
        return "authenticated", sts.get_caller_identity()["Arn"]
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code") or "Unknown"
        return ("refused" if code in REFUSED_CODES else "inconclusive"), code
    except botocore.exceptions.BotoCoreError as exc:
        return "inconclusive", type(exc).__name__
