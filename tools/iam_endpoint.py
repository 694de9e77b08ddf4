"""A strict local IAM/STS endpoint: moto's server, in-process, refusing keys the way AWS does.

Usage:
    python tools/iam_endpoint.py --host H --port P --state-file F [--verbose]

Port 0 picks a free port. Once the server answers and authentication is on, F is written
atomically with mode 0600:
    {"endpoint_url": "http://H:P", "region": "us-east-1", "access_key_id": ...,
     "secret_access_key": ..., "account_id": "123456789012", "control_url": "http://H:P/_rekey"}
The key belongs to the IAM user `rekey-admin`, whose policy allows every action ("Action": "*"),
so it may call IAM, STS and Secrets Manager. SIGTERM or SIGINT stops the server, removes F and
exits 0.

What is strict (moto alone is not): every signed request, on IAM, STS and any other service,
is refused with HTTP 403 InvalidClientTokenId ("The security token included in the request is
invalid.") when its key is unknown, deleted, Inactive, listed in `refuse_key_ids`, or still inside
its propagation delay; a wrong secret gets SignatureDoesNotMatch. Any Active key may call
sts:GetCallerIdentity (as in AWS, it needs no permission); other actions need a policy that
allows them, else AccessDenied naming the action. A key's LastUsedDate advances only for
requests that passed authentication. /moto-api/ is closed: it could switch authentication off.

Control API (plain HTTP JSON under /_rekey, no AWS auth):
    GET  /_rekey/faults         current faults
    POST /_rekey/faults         update with a partial JSON object; unknown names or bad values
                                answer 400 naming them. Fields:
        propagation_delay_s  float >= 0. A key created while it is set is refused until that
                             many seconds after its creation (setting it back to 0 does not
                             release keys already created; /faults/clear does).
        throttle_rate        0..1. That fraction of AWS API calls is answered HTTP 400 Throttling
                             (query protocol: <ErrorResponse><Error><Type>Sender</Type>
                             <Code>Throttling</Code>...; JSON protocol: ThrottlingException),
                             which botocore's standard retry mode retries.
        error_rate           0..1. That fraction of calls (of those not throttled) is answered
                             HTTP 500 InternalFailure.
        refuse_key_ids       list of key ids refused as if Inactive.
        seed                 int or null: reseeds the random source of the two rates, so a test
                             gets the same sequence every time.
    POST /_rekey/faults/clear   reset every fault (and release keys held by a propagation delay)
    GET  /_rekey/counts         {"iam:CreateAccessKey": 2, "sts:GetCallerIdentity": 10, ...}:
                                every AWS API request received, faulted and refused ones included,
                                keyed by the service of the SigV4 credential scope and the action
    POST /_rekey/counts/reset   zero the counts

A request with the header `X-Rekey-Out-Of-Band: 1` (test-only out-of-band checks) is neither
counted nor faulted; it is still authenticated like any other.
"""
from __future__ import annotations

import argparse
import functools
import io
import json
import logging
import os
import random
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs
from xml.etree import ElementTree

REGION = "us-east-1"
ADMIN_USER = "rekey-admin"
CONTROL_PREFIX = "/_rekey"
OUT_OF_BAND_ENVIRON = "HTTP_X_REKEY_OUT_OF_BAND"

_JSON_AUTH_ERRORS = {
    "InvalidClientTokenId": "UnrecognizedClientException",
    "SignatureDoesNotMatch": "InvalidSignatureException",
    "AccessDenied": "AccessDeniedException",
}
_XMLNS = {
    "iam": "https://iam.amazonaws.com/doc/2010-05-08/",
    "sts": "https://sts.amazonaws.com/doc/2011-06-15/",
}


class FaultError(ValueError):
    """A control request asked for a fault that does not exist or with a bad value."""


def _rate(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise FaultError(f"{name} must be a number from 0 to 1, got {value!r}")
    return float(value)


def _delay(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise FaultError(f"{name} must be a number of seconds >= 0, got {value!r}")
    return float(value)


def _key_ids(name, value):
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise FaultError(f"{name} must be a list of access key id strings, got {value!r}")
    return list(value)


def _seed(name, value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise FaultError(f"{name} must be an integer or null, got {value!r}")
    return value


class Faults:
    """The faults switched on at run time, and the keys still inside their propagation delay."""

    FIELDS = {
        "propagation_delay_s": (_delay, 0.0),
        "throttle_rate": (_rate, 0.0),
        "error_rate": (_rate, 0.0),
        "refuse_key_ids": (_key_ids, []),
        "seed": (_seed, None),
    }

    def __init__(self):
        self._lock = threading.Lock()
        self._clear_locked()

    def _clear_locked(self):
        self._values = {name: (list(default) if isinstance(default, list) else default)
                        for name, (_kind, default) in self.FIELDS.items()}
        self._random = random.Random()
        self._not_before = {}

    def clear(self):
        with self._lock:
            self._clear_locked()

    def snapshot(self):
        with self._lock:
            return {name: (list(v) if isinstance(v, list) else v) for name, v in self._values.items()}

    def update(self, changes):
        if not isinstance(changes, dict):
            raise FaultError(f"faults must be a JSON object, got {changes!r}")
        unknown = sorted(set(changes) - set(self.FIELDS))
        if unknown:
            raise FaultError(f"unknown fault(s) {unknown}; expected some of {sorted(self.FIELDS)}")
        checked = {name: self.FIELDS[name][0](name, value) for name, value in changes.items()}
        with self._lock:
            self._values.update(checked)
            if "seed" in checked:
                self._random = random.Random(checked["seed"])
        return self.snapshot()

    def key_created(self, access_key_id):
        with self._lock:
            delay = self._values["propagation_delay_s"]
            if delay > 0:
                self._not_before[access_key_id] = time.monotonic() + delay

    def key_refused(self, access_key_id):
        with self._lock:
            if access_key_id in self._values["refuse_key_ids"]:
                return True
            not_before = self._not_before.get(access_key_id)
            if not_before is None:
                return False
            if time.monotonic() < not_before:
                return True
            del self._not_before[access_key_id]
            return False

    def draw(self):
        """None, "throttle" or "error" for one AWS API request."""
        with self._lock:
            if self._random.random() < self._values["throttle_rate"]:
                return "throttle"
            if self._random.random() < self._values["error_rate"]:
                return "error"
            return None


class Counts:
    def __init__(self):
        self._lock = threading.Lock()
        self._counts = Counter()

    def add(self, name):
        with self._lock:
            self._counts[name] += 1

    def snapshot(self):
        with self._lock:
            return dict(sorted(self._counts.items()))

    def reset(self):
        with self._lock:
            self._counts.clear()


def make_moto_strict(faults):
    """Patch moto so that authentication refuses what AWS refuses (see the module docstring)."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.iam import access_control, models

    original_mark_visited = models.mark_account_as_visited
    original_create_key = models.IAMBackend.create_access_key

    class StrictIAMUserAccessKey(access_control.IAMUserAccessKey):
        # moto finds the key by id and never looks at its status.
        def __init__(self, account_id, partition, access_key_id, headers):
            super().__init__(account_id, partition, access_key_id, headers)
            user = self.backend.get_user(self._owner_user_name)
            key = next(k for k in user.access_keys if k.access_key_id == access_key_id)
            if key.status != "Active" or faults.key_refused(access_key_id):
                raise access_control.CreateAccessKeyFailure(reason="InvalidId")

    class StrictIAMRequest(access_control.IAMRequest):
        def check_signature(self):
            super().check_signature()
            # Only an authenticated request counts as a use of the key, as in AWS.
            original_mark_visited(self.account_id, self._access_key._access_key_id,
                                  self._service, self._region)

    def mark_visited_unless_auth(account_id, access_key, service, region):
        # moto marks every request's key as used before authenticating it.
        if ActionAuthenticatorMixin.request_count < settings.INITIAL_NO_AUTH_ACTION_COUNT:
            original_mark_visited(account_id, access_key, service, region)

    def create_access_key(self, *args, **kwargs):
        key = original_create_key(self, *args, **kwargs)
        faults.key_created(key.access_key_id)
        return key

    access_control.IAMUserAccessKey = StrictIAMUserAccessKey
    access_control.IAMRequest = StrictIAMRequest
    models.mark_account_as_visited = mark_visited_unless_auth
    models.IAMBackend.create_access_key = create_access_key


def enable_authentication():
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    ActionAuthenticatorMixin.request_count = 0


def _credential_scope(environ):
    """(service, region) from the SigV4 Authorization header or a presigned URL, else None."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    scope = auth.partition("Credential=")[2].partition(",")[0]
    if not scope:
        scope = parse_qs(environ.get("QUERY_STRING", "")).get("X-Amz-Credential", [""])[0]
    parts = scope.split("/")
    return (parts[3], parts[2]) if len(parts) >= 5 else None


def _action(environ, body):
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return target.rpartition(".")[2]
    for source in (body.decode("utf-8", "replace"), environ.get("QUERY_STRING", "")):
        action = parse_qs(source).get("Action")
        if action:
            return action[0]
    return None


def _read_body(environ):
    """Read the request body and put it back, so moto can read it again."""
    stream = environ["wsgi.input"]
    if environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        body = stream.read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _fault_response(kind, service, json_protocol, start_response):
    request_id = str(uuid.uuid4())
    if kind == "throttle":
        status, code, error_type, message = "400 Bad Request", "Throttling", "Sender", "Rate exceeded"
        json_code = "ThrottlingException"
    else:
        status, code, error_type = "500 Internal Server Error", "InternalFailure", "Receiver"
        message = "We encountered an internal error. Please try again."
        json_code = code
    if json_protocol:
        content_type = "application/x-amz-json-1.1"
        body = json.dumps({"__type": json_code, "message": message}).encode()
    else:
        content_type = "text/xml"
        xmlns = _XMLNS.get(service)
        attr = f' xmlns="{xmlns}"' if xmlns else ""
        body = (f"<ErrorResponse{attr}><Error><Type>{error_type}</Type><Code>{code}</Code>"
                f"<Message>{message}</Message></Error><RequestId>{request_id}</RequestId>"
                f"</ErrorResponse>").encode()
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))),
                            ("x-amzn-RequestId", request_id)])
    return [body]


def _as_json_protocol_error(app, environ, start_response):
    """moto answers authentication errors in XML even to JSON-protocol services (Secrets Manager),
    so botocore sees only "403"; AWS answers them in JSON with these codes."""
    captured = {}

    def capture(status, headers, exc_info=None):
        captured.update(status=status, headers=headers)
        return captured.setdefault("written", []).append

    result = app(environ, capture)
    try:
        body = b"".join(result)
    finally:
        getattr(result, "close", lambda: None)()
    body = b"".join(captured.get("written", [])) + body
    status, headers = captured["status"], captured["headers"]
    if status.startswith("403") and b"<ErrorResponse" in body:
        error = ElementTree.fromstring(body)
        code = error.findtext(".//Code")
        if code in _JSON_AUTH_ERRORS:
            body = json.dumps({"__type": _JSON_AUTH_ERRORS[code],
                               "message": error.findtext(".//Message")}).encode()
            headers = [("Content-Type", "application/x-amz-json-1.1")] + [
                (k, v) for k, v in headers if k.lower() not in ("content-type", "content-length")]
    headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
    start_response(status, headers + [("Content-Length", str(len(body)))])
    return [body]


def _json_response(start_response, status, payload):
    body = json.dumps(payload, sort_keys=True).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class RekeyMiddleware:
    """Serves /_rekey, counts and faults AWS API requests, then hands them to moto."""

    def __init__(self, app, faults, counts):
        self.app = app
        self.faults = faults
        self.counts = counts

    def __call__(self, environ, start_response):
        # Read every body here: one left unread would corrupt the next request on a kept-alive
        # connection.
        body = _read_body(environ)
        path = environ.get("PATH_INFO", "")
        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            return self.control(environ, start_response, path[len(CONTROL_PREFIX):], body)
        if path.startswith("/moto-api"):
            return _json_response(start_response, "404 Not Found", {
                "error": "/moto-api is closed on the strict endpoint; use /_rekey"})
        json_protocol = "HTTP_X_AMZ_TARGET" in environ
        app = functools.partial(_as_json_protocol_error, self.app) if json_protocol else self.app
        action = _action(environ, body)
        scope = _credential_scope(environ)
        if environ.get(OUT_OF_BAND_ENVIRON) == "1" or (action is None and scope is None):
            return app(environ, start_response)
        service = scope[0] if scope else "unsigned"
        self.counts.add(f"{service}:{action or '?'}")
        fault = self.faults.draw()
        if fault:
            return _fault_response(fault, service, json_protocol, start_response)
        return app(environ, start_response)

    def control(self, environ, start_response, route, body):
        method = environ.get("REQUEST_METHOD")
        try:
            if route == "/faults" and method == "GET":
                return _json_response(start_response, "200 OK", self.faults.snapshot())
            if route == "/faults" and method == "POST":
                try:
                    changes = json.loads(body or b"{}")
                except ValueError as exc:
                    raise FaultError(f"the body must be a JSON object: {exc}") from None
                return _json_response(start_response, "200 OK", self.faults.update(changes))
            if route == "/faults/clear" and method == "POST":
                self.faults.clear()
                return _json_response(start_response, "200 OK", self.faults.snapshot())
            if route == "/counts" and method == "GET":
                return _json_response(start_response, "200 OK", self.counts.snapshot())
            if route == "/counts/reset" and method == "POST":
                self.counts.reset()
                return _json_response(start_response, "200 OK", {})
        except FaultError as exc:
            return _json_response(start_response, "400 Bad Request", {"error": str(exc)})
        return _json_response(start_response, "404 Not Found", {
            "error": f"no control route {method} {CONTROL_PREFIX}{route}; see tools/iam_endpoint.py"})


def bootstrap_admin(endpoint_url):
    """Create the admin user, its allow-everything policy and its key (auth is still off)."""
    import boto3

    iam = boto3.client("iam", endpoint_url=endpoint_url, region_name=REGION,
                       aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
    iam.create_user(UserName=ADMIN_USER)
    policy = iam.create_policy(PolicyName=f"{ADMIN_USER}-all", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    }))
    iam.attach_user_policy(UserName=ADMIN_USER, PolicyArn=policy["Policy"]["Arn"])
    key = iam.create_access_key(UserName=ADMIN_USER)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def _mark_out_of_band(request, **_):
    request.headers["X-Rekey-Out-Of-Band"] = "1"


def check_admin(endpoint_url, access_key_id, secret_access_key):
    import boto3

    sts = boto3.client("sts", endpoint_url=endpoint_url, region_name=REGION,
                       aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key)
    sts.meta.events.register("before-sign.*.*", _mark_out_of_band)
    return sts.get_caller_identity()["Account"]


def write_state_file(path, state):
    """Atomically: a 0600 temp file in the same directory, then rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--host", required=True, help="address to bind, e.g. 127.0.0.1 or a bridge address")
    parser.add_argument("--port", type=int, required=True, help="port to bind; 0 picks a free one")
    parser.add_argument("--state-file", required=True, type=Path,
                        help="where to write the JSON state (mode 0600) once ready")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0..65535, got {args.port}")
    if not args.state_file.parent.is_dir():
        parser.error(f"--state-file directory {str(args.state_file.parent)!r} does not exist")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.INFO if args.verbose else logging.WARNING)

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    faults, counts = Faults(), Counts()
    make_moto_strict(faults)
    app = RekeyMiddleware(DomainDispatcherApplication(create_backend_app), faults, counts)
    # Bound here, not by werkzeug, which answers a failed bind with a bare strerror and exit 1.
    try:
        family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
        sock = socket.create_server((args.host, args.port), family=family, backlog=128)
    except OSError as exc:
        print(f"iam_endpoint: cannot bind {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    with sock:
        server = make_server(args.host, sock.getsockname()[1], app, threaded=True,
                             request_handler=MotoRequestHandler, fd=sock.fileno())

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    serving = threading.Thread(target=server.serve_forever, name="iam-endpoint", daemon=True)
    serving.start()

    port = server.server_address[1]
    endpoint_url = f"http://{args.host}:{port}"
    connect_host = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
    local_url = f"http://{connect_host}:{port}"
    try:
        access_key_id, secret_access_key = bootstrap_admin(local_url)
        enable_authentication()
        account_id = check_admin(local_url, access_key_id, secret_access_key)
        counts.reset()
        write_state_file(args.state_file, {
            "endpoint_url": endpoint_url, "region": REGION, "access_key_id": access_key_id,
            "secret_access_key": secret_access_key, "account_id": account_id,
            "control_url": endpoint_url + CONTROL_PREFIX,
        })
        print(f"iam_endpoint: ready at {endpoint_url} (state file {args.state_file})", file=sys.stderr, flush=True)
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        args.state_file.unlink(missing_ok=True)
    print("iam_endpoint: stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
