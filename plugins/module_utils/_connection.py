# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# Internal to rekey.aws: not a public API, may change without notice.
"""boto3 sessions and clients built from the shared connection options (doc fragment
rekey.aws._connection). No AWS call is made here: see _iam.py."""

import os
import traceback

from ansible.module_utils.basic import env_fallback

try:
    import boto3
    import botocore.config
    import botocore.loaders
    import botocore.session
except ImportError:
    HAS_BOTO3 = False
    BOTO3_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_BOTO3 = True
    BOTO3_IMPORT_ERROR = None

USER_AGENT = "rekey.aws"

ACCESS_KEY_ENV = ("AWS_ACCESS_KEY_ID",)
REGION_ENV = ("AWS_REGION", "AWS_DEFAULT_REGION")  # the first one set wins

_ARGSPEC = {
    "region": {"type": "str", "default": "us-east-1", "aliases": ["aws_region"],
               "fallback": (env_fallback, list(REGION_ENV))},
    "endpoint_url": {"type": "str", "aliases": ["aws_endpoint_url"],
                     "fallback": (env_fallback, ["AWS_ENDPOINT_URL"])},
    "validate_certs": {"type": "bool", "default": True},
    "access_key": {"type": "str", "no_log": False, "aliases": ["aws_access_key_id", "aws_access_key"],
                   "fallback": (env_fallback, list(ACCESS_KEY_ENV))},
    "secret_key": {"type": "str", "no_log": True, "aliases": ["aws_secret_access_key", "aws_secret_key"],
                   "fallback": (env_fallback, ["AWS_SECRET_ACCESS_KEY"])},
    "session_token": {"type": "str", "no_log": True, "aliases": ["aws_session_token"],
                      "fallback": (env_fallback, ["AWS_SESSION_TOKEN"])},
    "profile": {"type": "str", "aliases": ["aws_profile"], "fallback": (env_fallback, ["AWS_PROFILE"])},
    "retries": {"type": "int", "default": 10},
}


def connection_argspec(**module_options):
    """The module's own options merged with every connection option."""
    spec = dict((name, dict(option)) for name, option in _ARGSPEC.items())
    clash = sorted(set(spec) & set(module_options))
    if clash:
        raise ValueError("module options %s clash with the connection options" % ", ".join(clash))
    spec.update(module_options)
    return spec


def connection_problem(params):
    """A message naming a bad connection option value, or None."""
    retries = params.get("retries")
    if retries is not None and retries < 0:
        return "retries=%d is not valid: expected how often a failed call is retried, 0 or more" % retries
    if bool(params.get("access_key")) != bool(params.get("secret_key")):
        given, missing = ("access_key", "secret_key") if params.get("access_key") else ("secret_key", "access_key")
        return "%s is set but %s is not: give both, or neither to use the default credential chain" % (given, missing)
    if params.get("profile") and params.get("access_key") and not _keys_from_env(params):
        return "profile '%s' and access_key are both set: give one of them" % params["profile"]
    return None


def _keys_from_env(params):
    return params.get("access_key") == os.environ.get(ACCESS_KEY_ENV[0])


def admin_session(params):
    """A boto3 session with the module's credentials; boto3's default chain when none are given."""
    kwargs = {"region_name": params.get("region")}
    if params.get("profile"):
        # A profile set on the task wins over keys found in the environment.
        kwargs["profile_name"] = params["profile"]
    elif params.get("access_key"):
        kwargs.update(aws_access_key_id=params["access_key"], aws_secret_access_key=params["secret_key"],
                      aws_session_token=params.get("session_token"))
    return boto3.session.Session(botocore_session=_botocore_session(), **kwargs)


# botocore's reader of service models and endpoint data, shared by every session of the process:
# each file is read once per process, not once per client (IAM's model is 0.5 MB of JSON).
_LOADER = []


def _botocore_session():
    if not _LOADER:
        _LOADER.append(botocore.loaders.create_loader())
    session = botocore.session.Session()
    session.register_component("data_loader", _LOADER[0])
    return session


def read_service_data(services):
    """Read now what a client of each service reads when it is made (no credentials are looked up,
    no call is made). ansible-playbook imports the action plugins before it forks a worker per
    task, and their import calls this: every worker starts with the data read instead of reading
    it for its first client (0.1-0.3 s a task)."""
    session = boto3.session.Session(botocore_session=_botocore_session(), region_name="us-east-1",
                                    aws_access_key_id="read-only", aws_secret_access_key="no-call")
    for service in services:
        session.client(service)


def client(session, service, params, retries, timeout=None):
    """retries: how often botocore retries a failed call (its Config max_attempts, which does not
    count the first attempt); timeout: seconds for connecting and for reading each answer."""
    timeouts = {} if timeout is None else {"connect_timeout": timeout, "read_timeout": timeout}
    config = botocore.config.Config(
        retries={"mode": "standard", "max_attempts": retries},
        user_agent_extra=USER_AGENT,
        **timeouts
    )
    return session.client(service, endpoint_url=params.get("endpoint_url"),
                          verify=params.get("validate_certs", True), config=config)


# (service, connection options) -> (session, client); see shared_client().
_SHARED = {}


def shared_client(service, params, retries):
    """The session and client for these connection options, made once per process: the loop items
    of a task run in one worker process and share them instead of loading the service's model
    again (about 0.15 s a client). A worker ends with its task, and a shipped module with its run."""
    key = (service, retries) + tuple(params.get(name) for name in sorted(_ARGSPEC))
    if key not in _SHARED:
        session = admin_session(params)
        _SHARED[key] = (session, client(session, service, params, retries))
    return _SHARED[key]


def key_session(access_key_id, secret_access_key, session_token, region):
    """A session holding only the given key: never the environment's or a profile's credentials."""
    return boto3.session.Session(botocore_session=_botocore_session(), aws_access_key_id=access_key_id,
                                 aws_secret_access_key=secret_access_key, aws_session_token=session_token,
                                 region_name=region)


def credential_source(params, session):
    """Where the credentials the module used came from, for error messages (never the secret)."""
    if params.get("access_key") and not params.get("profile"):
        origin = "the access_key/secret_key options"
        if _keys_from_env(params):
            origin = "the AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY environment variables (or the same options)"
        return "access key %s from %s" % (params["access_key"], origin)
    try:
        credentials = session.get_credentials()
    except Exception:  # the credential chain itself failed: nothing more to tell
        credentials = None
    if credentials is None:
        return "no credentials found by boto3's default credential chain"
    method = getattr(credentials, "method", None) or "unknown"
    where = "boto3's default credential chain (%s)" % method
    if params.get("profile"):
        where = "profile '%s' (%s)" % (params["profile"], method)
    return "access key %s from %s" % (credentials.access_key, where)
