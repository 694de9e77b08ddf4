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
        fault_scope          "all" (default) or "controller": error_burst, fail_actions,
                             throttle_rate and error_rate then apply only to requests from the
                             controller (REMOTE_ADDR is the address the server is bound to, or a
                             loopback address), so apps on fleet hosts keep calling AWS unharmed.
        error_burst          int >= 0. The next N AWS calls in scope are answered HTTP 500
                             InternalFailure; GET shows how many are left.
        fail_actions         {"iam:CreateAccessKey": {"code": "LimitExceeded", "status": 409,
                             "message": "...", "count": 1}, ...}: the next `count` calls of that
                             action (named as in /counts) in scope fail with that AWS error, then
                             pass again. code: required; status: 400-599, default 400; message:
                             default "<code> (injected by the strict endpoint)"; count: int >= 1,
                             default 1, null = every call; delay_s: seconds >= 0 the endpoint
                             waits before it answers that error (a call that hangs, then fails;
                             the action is not done), default 0. The error is shaped as AWS shapes it
                             (query protocol: XML ErrorResponse, Type Sender below 500, Receiver
                             from 500; JSON protocol: {"__type", "message"}). GET shows the counts
                             left; an entry is removed once used up. Setting it replaces the map.
        propagation_flap     list of [seconds_from_creation, "accept" | "refuse"] change points,
                             seconds strictly increasing, e.g. [[0, "refuse"], [2, "accept"],
                             [3, "refuse"], [6, "accept"]]. A key created while it is set follows
                             it: accepted before the first point, then as the last point reached
                             says (refused for ever when the last one is "refuse", until
                             /faults/clear). Combines with propagation_delay_s: refused when
                             either refuses.
    Checked in this order for each AWS call in scope: error_burst, fail_actions, throttle_rate,
    error_rate; the first that fires answers. Keys are refused (refuse_key_ids, the delay, the
    flap) for every caller, whatever the scope.
    POST /_rekey/faults/clear   reset every fault (and release keys held by a delay or a flap)
    GET  /_rekey/keys           keys created while propagation_delay_s or propagation_flap was
                                set: {"AKIA...": {"created_at": epoch seconds (wall clock),
                                "delay_s": 30.0, "flap": [[0, "refuse"], ...]}}, until /faults/clear
    GET  /_rekey/counts         {"iam:CreateAccessKey": 2, "sts:GetCallerIdentity": 10, ...}:
                                every AWS API request received, faulted and refused ones included,
                                keyed by the service of the SigV4 credential scope and the action
    GET  /_rekey/counts/faulted {"iam:CreateAccessKey": {"LimitExceeded": 1}, ...}: the requests a
                                fault answered (not those refused for their key), by action and code
    GET  /_rekey/counts/hosts   the same as /counts, for the requests that did not come from the
                                controller (the fleet's hosts: their apps' STS calls, and any IAM
                                call a host made, which must be none)
    POST /_rekey/counts/reset   zero the counts (all three)

A request with the header `X-Rekey-Out-Of-Band: 1` (test-only out-of-band checks) is neither
counted nor faulted; it is still authenticated like any other.
"""
from __future__ import annotations

import argparse
import copy
import functools
import ipaddress
import io
import json
import logging
import os
import random
import re
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
from xml.sax.saxutils import escape

REGION = "us-east-1"
ADMIN_USER = "rekey-admin"
CONTROL_PREFIX = "/_rekey"
OUT_OF_BAND_ENVIRON = "HTTP_X_REKEY_OUT_OF_BAND"
SCOPES = ("all", "controller")
# (HTTP status, AWS error code, message, seconds before the answer) of the two rate faults.
THROTTLING = (400, "Throttling", "Rate exceeded", 0.0)
INTERNAL_FAILURE = (500, "InternalFailure", "We encountered an internal error. Please try again.", 0.0)
_JSON_CODES = {"Throttling": "ThrottlingException"}
_REASONS = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 409: "Conflict", 429: "Too Many Requests",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
ACTION_RE = re.compile(r"\A[a-z0-9-]+:[A-Za-z0-9]+\Z")
CODE_RE = re.compile(r"\A[A-Za-z][A-Za-z0-9.]*\Z")

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


def _scope(name, value):
    if value not in SCOPES:
        raise FaultError(f"{name} must be one of {list(SCOPES)}, got {value!r}")
    return value


def _count(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FaultError(f"{name} must be a whole number >= 0, got {value!r}")
    return value


def _fail_actions(name, value):
    if not isinstance(value, dict):
        raise FaultError(f"{name} must be an object of action -> error, e.g. "
                         f'{{"iam:CreateAccessKey": {{"code": "LimitExceeded", "status": 409}}}}, got {value!r}')
    checked = {}
    for action, spec in value.items():
        where = f"{name}[{action!r}]"
        if not isinstance(action, str) or not ACTION_RE.match(action):
            raise FaultError(f"{name}: {action!r} is not an action: expected service:Action, e.g. iam:CreateAccessKey")
        if not isinstance(spec, dict):
            raise FaultError(f"{where} must be an object with code, status, message, count, delay_s; got {spec!r}")
        unknown = sorted(set(spec) - {"code", "status", "message", "count", "delay_s"})
        if unknown:
            raise FaultError(f"{where}: unknown field(s) {unknown}; expected some of "
                             "['code', 'count', 'delay_s', 'message', 'status']")
        code = spec.get("code")
        if not isinstance(code, str) or not CODE_RE.match(code):
            raise FaultError(f"{where}.code must be an AWS error code such as LimitExceeded, got {code!r}")
        status = spec.get("status", 400)
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise FaultError(f"{where}.status must be an HTTP error status 400-599, got {status!r}")
        message = spec.get("message", f"{code} (injected by the strict endpoint)")
        if not isinstance(message, str) or not message:
            raise FaultError(f"{where}.message must be a non-empty string, got {message!r}")
        count = spec.get("count", 1)
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise FaultError(f"{where}.count must be a whole number >= 1, or null for every call; got {count!r}")
        checked[action] = {"code": code, "status": status, "message": message, "count": count}
        if "delay_s" in spec:
            checked[action]["delay_s"] = _delay(f"{where}.delay_s", spec["delay_s"])
    return checked


def _flap(name, value):
    expected = 'a list of [seconds_from_creation, "accept" | "refuse"] with seconds strictly increasing'
    if not isinstance(value, list):
        raise FaultError(f"{name} must be {expected}, got {value!r}")
    points, last = [], None
    for point in value:
        if (not isinstance(point, list) or len(point) != 2 or isinstance(point[0], bool)
                or not isinstance(point[0], (int, float)) or point[0] < 0 or point[1] not in ("accept", "refuse")):
            raise FaultError(f"{name}: {point!r} is not a change point: expected {expected}")
        if last is not None and point[0] <= last:
            raise FaultError(f"{name}: {point[0]!r} does not come after {last!r}: expected {expected}")
        last = point[0]
        points.append([float(point[0]), point[1]])
    return points


class Faults:
    """The faults switched on at run time, and the keys held by a propagation delay or flap."""

    FIELDS = {
        "propagation_delay_s": (_delay, 0.0),
        "throttle_rate": (_rate, 0.0),
        "error_rate": (_rate, 0.0),
        "refuse_key_ids": (_key_ids, []),
        "seed": (_seed, None),
        "fault_scope": (_scope, "all"),
        "error_burst": (_count, 0),
        "fail_actions": (_fail_actions, {}),
        "propagation_flap": (_flap, []),
    }

    def __init__(self):
        self._lock = threading.Lock()
        self._clear_locked()

    def _clear_locked(self):
        self._values = {name: copy.deepcopy(default) for name, (_kind, default) in self.FIELDS.items()}
        self._random = random.Random()
        # key id -> (monotonic creation time, wall-clock creation time, delay, flap)
        self._scheduled = {}

    def clear(self):
        with self._lock:
            self._clear_locked()

    def snapshot(self):
        with self._lock:
            return copy.deepcopy(self._values)

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
            delay, flap = self._values["propagation_delay_s"], self._values["propagation_flap"]
            if delay > 0 or flap:
                self._scheduled[access_key_id] = (time.monotonic(), time.time(), delay, copy.deepcopy(flap))

    def scheduled_keys(self):
        with self._lock:
            return {key_id: {"created_at": wall, "delay_s": delay, "flap": copy.deepcopy(flap)}
                    for key_id, (_mono, wall, delay, flap) in self._scheduled.items()}

    def key_refused(self, access_key_id):
        with self._lock:
            if access_key_id in self._values["refuse_key_ids"]:
                return True
            scheduled = self._scheduled.get(access_key_id)
            if scheduled is None:
                return False
            created, _wall, delay, flap = scheduled
            age = time.monotonic() - created
            if age < delay:
                return True
            state = "accept"
            for at, change in flap:
                if age >= at:
                    state = change
            return state == "refuse"

    def draw(self, action, from_controller):
        """None or the error (status, code, message, seconds to wait first) to answer one AWS API
        request with."""
        with self._lock:
            if self._values["fault_scope"] == "controller" and not from_controller:
                return None
            if self._values["error_burst"] > 0:
                self._values["error_burst"] -= 1
                return INTERNAL_FAILURE
            spec = self._values["fail_actions"].get(action)
            if spec is not None:
                if spec["count"] is not None:
                    spec["count"] -= 1
                    if spec["count"] == 0:
                        del self._values["fail_actions"][action]
                return spec["status"], spec["code"], spec["message"], spec.get("delay_s", 0.0)
            if self._random.random() < self._values["throttle_rate"]:
                return THROTTLING
            if self._random.random() < self._values["error_rate"]:
                return INTERNAL_FAILURE
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


def _fault_response(error, service, json_protocol, start_response):
    """An AWS-shaped error answer: error is (HTTP status, code, message, delay), the delay waited
    already."""
    status, code, message, _delay_s = error
    request_id = str(uuid.uuid4())
    if json_protocol:
        content_type = "application/x-amz-json-1.1"
        body = json.dumps({"__type": _JSON_CODES.get(code, code), "message": message}).encode()
    else:
        content_type = "text/xml"
        xmlns = _XMLNS.get(service)
        attr = f' xmlns="{xmlns}"' if xmlns else ""
        error_type = "Receiver" if status >= 500 else "Sender"
        body = (f"<ErrorResponse{attr}><Error><Type>{error_type}</Type><Code>{code}</Code>"
                f"<Message>{escape(message)}</Message></Error><RequestId>{request_id}</RequestId>"
                f"</ErrorResponse>").encode()
    start_response(f"{status} {_REASONS.get(status, 'Error')}",
                   [("Content-Type", content_type), ("Content-Length", str(len(body))),
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

    def __init__(self, app, faults, counts, controller_addresses=()):
        self.app = app
        self.faults = faults
        self.counts = counts
        self.faulted = Counts()
        self.from_hosts = Counts()
        self.controller_addresses = frozenset(controller_addresses)

    def from_controller(self, environ):
        """Whether the request comes from the controller: the server's own address or loopback."""
        try:
            address = ipaddress.ip_address(environ.get("REMOTE_ADDR", ""))
        except ValueError:
            return False
        if getattr(address, "ipv4_mapped", None):
            address = address.ipv4_mapped
        return address.is_loopback or str(address) in self.controller_addresses

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
        name = f"{service}:{action or '?'}"
        self.counts.add(name)
        from_controller = self.from_controller(environ)
        if not from_controller:
            self.from_hosts.add(name)
        fault = self.faults.draw(name, from_controller)
        if fault:
            self.faulted.add((name, fault[1]))
            # Outside the faults' lock: other requests go on meanwhile.
            time.sleep(fault[3])
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
            if route == "/keys" and method == "GET":
                return _json_response(start_response, "200 OK", self.faults.scheduled_keys())
            if route == "/counts" and method == "GET":
                return _json_response(start_response, "200 OK", self.counts.snapshot())
            if route == "/counts/faulted" and method == "GET":
                faulted = {}
                for (name, code), n in self.faulted.snapshot().items():
                    faulted.setdefault(name, {})[code] = n
                return _json_response(start_response, "200 OK", faulted)
            if route == "/counts/hosts" and method == "GET":
                return _json_response(start_response, "200 OK", self.from_hosts.snapshot())
            if route == "/counts/reset" and method == "POST":
                self.counts.reset()
                self.faulted.reset()
                self.from_hosts.reset()
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
    app = RekeyMiddleware(DomainDispatcherApplication(create_backend_app), faults, counts,
                          controller_addresses=[args.host])
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
