#!/usr/bin/env python
"""Poll every fleet host's /health about every 100 ms and tell auth failures from restart gaps.

Each probe is classified:
  ok            HTTP 200 (the key in use authenticates)
  auth_failure  HTTP 503 (the app's key was refused by STS, or it holds another key than pinned)
  gap           connection refused / reset / timed out (the service is restarting)
  error         anything else (502: endpoint trouble, 500: unreadable credentials, ...)

    prober.py --fleet DIR [--timeline FILE] [--totals FILE] [--max-seconds S] [--stop-file F]
    prober.py --url NAME=http://10.231.0.11:8080/health ...

Runs until SIGTERM/SIGINT, the stop file appears, or --max-seconds pass; then writes the totals
(per host and overall) to --totals and stdout. The timeline is JSON lines:
{"t": epoch, "host", "outcome", "status", "key_id", "error", "ms"}.
Python API: totals = Prober({"h1": url}).start() ... .stop()
"""
from __future__ import annotations

import argparse
import http.client
import json
import signal
import socket
import sys
import threading
import time
import urllib.parse
from pathlib import Path

# A probe unanswered this long counts as a gap. A restart refuses the connection at once, whatever
# the timeout; on a loaded 2-core machine a healthy app can take more than 1 s to answer.
PROBE_TIMEOUT_S = 3.0

GAP_ERRORS = (ConnectionRefusedError, ConnectionResetError, ConnectionAbortedError, BrokenPipeError,
              socket.timeout, TimeoutError, http.client.RemoteDisconnected)


def probe(url: str, timeout: float) -> dict:
    """One GET; returns {"outcome", "status", "key_id", "error"}."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/", headers={"Connection": "close"})
        resp = conn.getresponse()
        raw = resp.read()
    except GAP_ERRORS as exc:
        return {"outcome": "gap", "status": None, "key_id": None, "error": type(exc).__name__}
    except (OSError, http.client.HTTPException) as exc:
        return {"outcome": "error", "status": None, "key_id": None, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        conn.close()
    try:
        body = json.loads(raw)
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    outcome = {200: "ok", 503: "auth_failure"}.get(resp.status, "error")
    return {"outcome": outcome, "status": resp.status, "key_id": body.get("access_key_id"),
            "error": body.get("error")}


class HostStats:
    def __init__(self):
        self.probes = self.ok = self.auth_failures = self.gaps = self.errors = 0
        self.gap_periods = 0
        self.longest_gap_s = 0.0
        self.gap_started: float | None = None
        self.key_ids: list[str] = []
        self.auth_failure_codes: dict[str, int] = {}
        self.error_codes: dict[str, int] = {}
        self.first_auth_failure: float | None = None
        self.last_auth_failure: float | None = None

    def add(self, t: float, result: dict) -> None:
        self.probes += 1
        outcome = result["outcome"]
        if outcome == "gap":
            self.gaps += 1
            if self.gap_started is None:
                self.gap_started = t
                self.gap_periods += 1
        else:
            self.close_gap(t)
        if outcome == "ok":
            self.ok += 1
        elif outcome == "auth_failure":
            self.auth_failures += 1
            code = result["error"] or "unknown"
            self.auth_failure_codes[code] = self.auth_failure_codes.get(code, 0) + 1
            self.first_auth_failure = self.first_auth_failure or t
            self.last_auth_failure = t
        elif outcome == "error":
            self.errors += 1
            code = result["error"] or f"HTTP {result['status']}"
            self.error_codes[code] = self.error_codes.get(code, 0) + 1
        key_id = result["key_id"]
        if key_id and (not self.key_ids or self.key_ids[-1] != key_id):  # the key in use, refused or not
            self.key_ids.append(key_id)

    def close_gap(self, t: float) -> None:
        """A gap lasts from its first refused probe to the next probe that got an answer."""
        if self.gap_started is not None:
            self.longest_gap_s = max(self.longest_gap_s, t - self.gap_started)
            self.gap_started = None

    def as_dict(self) -> dict:
        return {"probes": self.probes, "ok": self.ok, "auth_failures": self.auth_failures,
                "gaps": self.gaps, "gap_periods": self.gap_periods,
                "longest_gap_s": round(self.longest_gap_s, 3), "errors": self.errors,
                "key_ids": list(self.key_ids), "auth_failure_codes": dict(self.auth_failure_codes),
                "error_codes": dict(self.error_codes),
                "first_auth_failure": self.first_auth_failure, "last_auth_failure": self.last_auth_failure}


class Prober:
    """Threads that probe each URL every `interval` seconds until stop()."""

    def __init__(self, urls: dict[str, str] | list[str], *, interval: float = 0.1, timeout: float = PROBE_TIMEOUT_S,
                 timeline: str | Path | None = None):
        if isinstance(urls, (list, tuple)):
            urls = {urllib.parse.urlsplit(u).netloc: u for u in urls}
        if not urls:
            raise ValueError("the prober needs at least one URL")
        for name, url in urls.items():
            if urllib.parse.urlsplit(url).scheme != "http":
                raise ValueError(f"URL {url!r} for {name} must be http://HOST:PORT/PATH")
        if interval <= 0 or timeout <= 0:
            raise ValueError(f"interval ({interval}) and timeout ({timeout}) must be positive")
        self.urls = dict(urls)
        self.interval = interval
        self.timeout = timeout
        self.stats = {name: HostStats() for name in self.urls}
        self._timeline = open(timeline, "a", encoding="utf-8") if timeline else None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started: float | None = None
        self._stopped: float | None = None

    def start(self) -> "Prober":
        self._started = time.time()
        for name, url in self.urls.items():
            thread = threading.Thread(target=self._loop, args=(name, url), name=f"probe-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _loop(self, name: str, url: str) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            t = time.time()
            started = time.monotonic()
            result = probe(url, self.timeout)
            ms = round((time.monotonic() - started) * 1000, 1)
            with self._lock:
                self.stats[name].add(t, result)
                if self._timeline:
                    self._timeline.write(json.dumps({"t": round(t, 3), "host": name, **result, "ms": ms}) + "\n")
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay < 0:  # a slow probe: do not try to catch up in a burst
                next_at = time.monotonic()
                delay = 0
            self._stop.wait(delay)

    def totals(self) -> dict:
        """Per host and overall; callable while running."""
        now = self._stopped or time.time()
        with self._lock:
            hosts = {}
            for name, stats in self.stats.items():
                if stats.gap_started is not None:  # still in a gap: count it up to now
                    longest = max(stats.longest_gap_s, now - stats.gap_started)
                    hosts[name] = dict(stats.as_dict(), longest_gap_s=round(longest, 3), in_gap=True)
                else:
                    hosts[name] = stats.as_dict()
        overall = {k: sum(h[k] for h in hosts.values())
                   for k in ("probes", "ok", "auth_failures", "gaps", "gap_periods", "errors")}
        overall["longest_gap_s"] = max((h["longest_gap_s"] for h in hosts.values()), default=0.0)
        overall["hosts"] = len(hosts)
        overall["hosts_with_auth_failures"] = sorted(n for n, h in hosts.items() if h["auth_failures"])
        duration = now - (self._started or now)
        overall["duration_s"] = round(duration, 3)
        overall["probes_per_s"] = round(overall["probes"] / duration, 1) if duration > 0 else 0.0
        overall["interval_s"] = self.interval
        return {"overall": overall, "hosts": hosts}

    def stop(self) -> dict:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + self.interval + 5)
        self._stopped = self._stopped or time.time()
        if self._timeline:
            with self._lock:
                self._timeline.close()
                self._timeline = None
        return self.totals()

    def __enter__(self) -> "Prober":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def urls_from_fleet(directory: str | Path) -> dict[str, str]:
    path = Path(directory) / "fleet.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"prober.py: cannot read {path}: {exc}") from None
    return {h["name"]: h["app_url"] for h in data["hosts"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="prober.py", description=__doc__.split("\n\n", maxsplit=1)[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--fleet", metavar="DIR", help="probe every host of the fleet in DIR (fleet.json)")
    src.add_argument("--url", action="append", metavar="NAME=URL", help="a health URL to probe (repeatable)")
    p.add_argument("--interval", type=float, default=0.1, help="seconds between probes of one host (0.1)")
    p.add_argument("--timeout", type=float, default=PROBE_TIMEOUT_S,
                   help=f"seconds before a probe counts as a gap ({PROBE_TIMEOUT_S})")
    p.add_argument("--timeline", metavar="FILE", help="append every probe as a JSON line")
    p.add_argument("--totals", metavar="FILE", help="write the totals JSON here on exit")
    p.add_argument("--max-seconds", type=float, help="stop after this long")
    p.add_argument("--stop-file", metavar="FILE", help="stop when this file exists")
    p.add_argument("--fail-on-auth-failure", action="store_true", help="exit 3 if any probe was an auth failure")
    args = p.parse_args(argv)
    if args.fleet:
        urls = urls_from_fleet(args.fleet)
    else:
        urls = {}
        for item in args.url:
            name, sep, url = item.partition("=")
            if not sep:
                p.error(f"--url {item!r}: expected NAME=URL")
            urls[name] = url
    try:
        prober = Prober(urls, interval=args.interval, timeout=args.timeout, timeline=args.timeline)
    except ValueError as exc:
        p.error(str(exc))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    prober.start()
    deadline = time.monotonic() + args.max_seconds if args.max_seconds else None
    while not stop.is_set():
        if deadline and time.monotonic() >= deadline:
            break
        if args.stop_file and Path(args.stop_file).exists():
            break
        stop.wait(0.1)
    totals = prober.stop()
    text = json.dumps(totals, indent=2)
    if args.totals:
        Path(args.totals).write_text(text + "\n")
    print(text)
    if args.fail_on_auth_failure and totals["overall"]["auth_failures"]:
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
