#!/usr/bin/env python
"""The demo app on every fleet host: a service that holds an AWS key, like a real one.

It reads its credentials file once at start (SIGHUP reloads it) and answers
  GET /health  200 {"access_key_id", "arn", "pid"}   STS GetCallerIdentity with the key in use works
               503 {"error": CODE, "access_key_id"}  the key is refused (InvalidClientTokenId,
                                                     SignatureDoesNotMatch, ...) or a pin file holds
                                                     another key id (PinnedKeyMismatch)
               502 {"error": CODE}                   the endpoint is unreachable, throttles or fails:
                                                     not the key's fault
               500 {"error": "CredentialsUnreadable", "reason"}  the file could not be read
With a key source file (--key-source-file, JSON {"service": "ssm" or "secretsmanager", "name",
"id_field", "secret_field"}), the credentials file holds only the key the app reads its real key
with: at start (and on SIGHUP) it reads the parameter (decrypted) or the secret, a JSON object
holding the key id and the secret in those fields, and uses that key - an app whose key is held
in AWS (the rotation's consumer formats ssm_parameter and secretsmanager_secret).
Under systemd (a Type=notify unit, NOTIFY_SOCKET set) it sends READY=1 once it listens, so a
start that fails fails `systemctl start/restart`.
One STS attempt per request, short timeouts: health tells the truth now. The secret is never
logged nor returned. Runs on Python 3.9+ with any boto3 of the last years.

Test controls, each a file holding a key id ("this app works only with that key"):
  --pin-file        /health answers 503 PinnedKeyMismatch while another key is in use
  --hang-pin-file   /health does not answer (for up to --hang-s) while another key is in use:
                    an app that hangs on its new configuration
  --start-pin-file  the app exits with status 3 at start when it loaded another key: an app
                    that cannot start on its new configuration (the restart fails)
"""
import argparse
import configparser
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# boto3 is imported only once the app knows it will start (see main): a start refused by
# --start-pin-file exits within supervisord's startsecs however loaded the machine is, so that
# supervisorctl reports a spawn error rather than a started app that dies a moment later.

# Error codes that mean "this key does not authenticate": answered 503.
AUTH_ERRORS = {"InvalidClientTokenId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken",
               "UnrecognizedClientException", "InvalidAccessKeyId", "AuthFailure", "IncompleteSignature"}


def log(message):
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} demoapp[{os.getpid()}] {message}", flush=True)


class Credentials:
    """What was loaded from the file: a ready STS client, or why there is none."""

    def __init__(self, access_key_id=None, client=None, error=None):
        self.access_key_id = access_key_id
        self.client = client
        self.error = error


class Unreadable(Exception):
    """The credentials file gives no key; the message says why (never a line of the file)."""


def read_profile(path, profile):
    """(key id, secret, session token or None) from the profile, or Unreadable."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as exc:
        raise Unreadable(f"cannot read {path}: {exc.strerror}") from None
    except (configparser.Error, UnicodeDecodeError) as exc:
        # The parser's message may quote a line of the file, i.e. a secret: name only the kind.
        raise Unreadable(f"cannot parse {path}: {type(exc).__name__}") from None
    if not parser.has_section(profile):
        raise Unreadable(f"{path} has no profile [{profile}]")
    key_id = parser.get(profile, "aws_access_key_id", fallback="").strip()
    secret = parser.get(profile, "aws_secret_access_key", fallback="").strip()
    token = parser.get(profile, "aws_session_token", fallback="").strip() or None
    if not key_id or not secret:
        raise Unreadable(f"profile [{profile}] in {path} lacks aws_access_key_id or aws_secret_access_key")
    return key_id, secret, token


def read_key_source(path):
    """The key source (a dict), or None when there is no such file."""
    try:
        with open(path, encoding="utf-8") as handle:
            source = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise Unreadable(f"cannot read the key source {path}: {type(exc).__name__}") from None
    if source.get("service") not in ("ssm", "secretsmanager") or not source.get("name"):
        raise Unreadable(f"key source {path}: expected service ssm or secretsmanager and a name")
    return source


def fetch_key(source, reader, endpoint_url, region, config):
    """(key id, secret) from the parameter or secret, read with the reader key; the value is never
    quoted in an error."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    key_id, secret, token = reader
    client = boto3.session.Session(aws_access_key_id=key_id, aws_secret_access_key=secret, aws_session_token=token,
                                   region_name=region).client(source["service"], endpoint_url=endpoint_url or None,
                                                              config=config)
    where = f"{source['service']} {source['name']}"
    try:
        if source["service"] == "ssm":
            text = client.get_parameter(Name=source["name"], WithDecryption=True)["Parameter"]["Value"]
        else:
            text = client.get_secret_value(SecretId=source["name"])["SecretString"]
    except (BotoCoreError, ClientError) as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
        raise Unreadable(f"cannot read {where}: {code}") from None
    try:
        value = json.loads(text)
        id_field = source.get("id_field") or "aws_access_key_id"
        secret_field = source.get("secret_field") or "aws_secret_access_key"
        return value[id_field], value[secret_field]
    except (ValueError, KeyError, TypeError):
        raise Unreadable(f"{where} holds no JSON object with the key id and secret fields") from None


def load(path, profile, endpoint_url, region, timeout, key_source_file=None):
    import boto3
    from botocore.config import Config

    config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=timeout,
                    read_timeout=timeout)
    try:
        key_id, secret, token = read_profile(path, profile)
        source = read_key_source(key_source_file) if key_source_file else None
        if source:
            key_id, secret = fetch_key(source, (key_id, secret, token), endpoint_url, region, config)
            token = None
    except Unreadable as exc:
        return Credentials(error=str(exc))
    session = boto3.session.Session(aws_access_key_id=key_id, aws_secret_access_key=secret,
                                    aws_session_token=token, region_name=region)
    client = session.client("sts", endpoint_url=endpoint_url or None, config=config)
    return Credentials(access_key_id=key_id, client=client)


class App:
    def __init__(self, args):
        self.args = args
        self.current = Credentials(error="not loaded yet")
        self.lock = threading.Lock()

    def reload(self):
        creds = load(self.args.credentials_file, self.args.profile, self.args.endpoint_url,
                     self.args.region, self.args.sts_timeout, self.args.key_source_file)
        with self.lock:
            self.current = creds
        if creds.error:
            log(f"credentials not loaded: {creds.error}")
        else:
            log(f"loaded key {creds.access_key_id} (profile {self.args.profile}) from {self.args.credentials_file}"
                + (" and the key source" if os.path.exists(self.args.key_source_file) else ""))

    def pinned_key_id(self, path=None):
        path = self.args.pin_file if path is None else path
        if not path:
            return None
        try:
            with open(path, encoding="utf-8") as handle:
                return handle.read().strip() or None
        except FileNotFoundError:
            return None

    def hang_while_pinned_elsewhere(self, key_id):
        """Do not answer while the hang pin names another key than key_id (at most --hang-s)."""
        deadline = time.monotonic() + self.args.hang_s
        while time.monotonic() < deadline:
            pinned = self.pinned_key_id(self.args.hang_pin_file)
            if not pinned or pinned == key_id:
                return
            time.sleep(0.2)

    def health(self):
        """(status, body) for GET /health."""
        from botocore.exceptions import BotoCoreError, ClientError

        with self.lock:
            creds = self.current
        if creds.error:
            return 500, {"error": "CredentialsUnreadable", "reason": creds.error}
        self.hang_while_pinned_elsewhere(creds.access_key_id)
        pinned = self.pinned_key_id()
        if pinned and pinned != creds.access_key_id:
            return 503, {"error": "PinnedKeyMismatch", "access_key_id": creds.access_key_id, "pinned": pinned}
        try:
            identity = creds.client.get_caller_identity()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "Unknown")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in AUTH_ERRORS or status == 403:
                return 503, {"error": code, "access_key_id": creds.access_key_id}
            return 502, {"error": code, "access_key_id": creds.access_key_id}
        except BotoCoreError as exc:
            return 502, {"error": type(exc).__name__, "access_key_id": creds.access_key_id}
        return 200, {"access_key_id": creds.access_key_id, "arn": identity.get("Arn"), "pid": os.getpid()}


def make_handler(app):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            if self.path.split("?", 1)[0] == "/health":
                status, body = app.health()
            else:
                status, body = 404, {"error": "NotFound", "path": self.path}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):  # one line per probe would drown the log
            pass

    return Handler


def parse_args(argv):
    p = argparse.ArgumentParser(description="Demo app holding an AWS key; GET /health proves it works.")
    p.add_argument("--listen", default="0.0.0.0:8080", help="HOST:PORT (default 0.0.0.0:8080)")
    p.add_argument("--credentials-file", default=os.environ.get("DEMOAPP_CREDENTIALS_FILE", "/etc/demoapp/credentials"))
    p.add_argument("--profile", default=os.environ.get("AWS_PROFILE", "default"))
    p.add_argument("--pin-file", default="/var/lib/demoapp/pin_key_id",
                   help="if this file holds a key id, health fails unless that key is in use")
    p.add_argument("--hang-pin-file", default="/var/lib/demoapp/hang_pin_key_id",
                   help="if this file holds a key id, health hangs unless that key is in use")
    p.add_argument("--hang-s", type=float, default=120.0, help="longest hang of one health request")
    p.add_argument("--start-pin-file", default="/var/lib/demoapp/start_pin_key_id",
                   help="if this file holds a key id, the app exits at start unless it loaded that key")
    p.add_argument("--key-source-file", default="/etc/demoapp/key_source",
                   help="if this file exists, the key is read from the SSM parameter or secret it names")
    p.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL"))
    p.add_argument("--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
    p.add_argument("--sts-timeout", type=float, default=2.0, help="connect and read timeout of the STS call")
    args = p.parse_args(argv)
    host, dummy, port = args.listen.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        p.error(f"--listen {args.listen!r}: expected HOST:PORT with a port 1-65535")
    args.address = (host or "0.0.0.0", int(port))
    return args


def notify_ready():
    """Tell systemd the app is up (a Type=notify unit), so `systemctl start` fails when it is not."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"READY=1", address)


def main(argv=None):
    args = parse_args(argv)
    app = App(args)
    start_pin = app.pinned_key_id(args.start_pin_file)
    from_aws = os.path.exists(args.key_source_file)
    try:
        key_id = None if from_aws else read_profile(args.credentials_file, args.profile)[0]
    except Unreadable:
        key_id = None  # reload() below says why
    if start_pin and start_pin != key_id and not from_aws:
        log(f"refusing to start: {args.start_pin_file} pins {start_pin}, loaded {key_id}")
        return 3
    app.reload()
    if start_pin and from_aws and start_pin != app.current.access_key_id:
        log(f"refusing to start: {args.start_pin_file} pins {start_pin}, loaded {app.current.access_key_id}")
        return 3
    signal.signal(signal.SIGHUP, lambda signum, frame: app.reload())
    server = ThreadingHTTPServer(args.address, make_handler(app))
    server.daemon_threads = True

    def stop(signum, frame):
        log(f"signal {signum}: stopping")
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log(f"listening on {args.address[0]}:{args.address[1]}, STS endpoint {args.endpoint_url or 'AWS default'}")
    notify_ready()
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
