"""The secret search of the hygiene tests (test_secret_hygiene.py, test_awx_runner.py). Test-only.

A finding names the file and offset and what was found (a label), never the secret: the secret, each
half of it, and their JSON-escaped and URL-encoded forms are looked for in bytes and in files."""
from __future__ import annotations

import subprocess
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20


@dataclass(frozen=True)
class Needle:
    label: str  # what was found, for the report: never the value
    value: bytes


def needles_for(name: str, secret: str) -> list[Needle]:
    """The secret, each half of it (a truncated or partly masked leak is still a leak), and
    their JSON-escaped and URL-encoded forms."""
    half = len(secret) // 2
    out = []
    for part_name, part in ((name, secret), (f"{name}, first half", secret[:half]),
                            (f"{name}, second half", secret[half:])):
        forms = {"": part, ", JSON-escaped": part.replace("/", "\\/"),
                 ", URL-encoded": urllib.parse.quote(part, safe="")}
        seen = set()
        for form, text in forms.items():
            if text not in seen:
                seen.add(text)
                out.append(Needle(part_name + form, text.encode()))
    return out


def find(data: bytes, needles: list[Needle], base: int = 0) -> set[tuple[int, int, str]]:
    """(offset, length, label) of every occurrence."""
    hits = set()
    for needle in needles:
        start = data.find(needle.value)
        while start != -1:
            hits.add((base + start, len(needle.value), needle.label))
            start = data.find(needle.value, start + 1)
    return hits


def findings(where: str, hits: set[tuple[int, int, str]]) -> list[str]:
    """One line per occurrence; a half inside a whole secret found at the same place is not
    repeated."""
    kept = [(offset, length, label) for offset, length, label in hits
            if not any(o <= offset and offset + length <= o + n and n > length for o, n, _label in hits)]
    return [f"{where} @ offset {offset}: {label}" for offset, _length, label in sorted(kept)]


def scan_bytes(where: str, data: bytes, needles: list[Needle]) -> list[str]:
    return findings(where, find(data, needles))


def scan_file(path: Path, needles: list[Needle]) -> list[str]:
    """Read in chunks that overlap by the longest needle, so a hit across a boundary is found."""
    overlap = max(len(n.value) for n in needles) - 1
    hits = set()
    try:
        with open(path, "rb") as handle:
            offset, tail = 0, b""
            while True:
                chunk = handle.read(CHUNK)
                if not chunk:
                    break
                hits.update(find(tail + chunk, needles, offset - len(tail)))
                tail = (tail + chunk)[-overlap:] if overlap > 0 else b""
                offset += len(chunk)
    except FileNotFoundError:  # gone since the sweep (another process's temp file): nothing left to leak
        return []
    except OSError as exc:
        return [f"{path}: could not be read ({exc.strerror}); it must be searched"]
    return findings(str(path), hits)


def redact(text: str, needles: list[Needle]) -> str:
    """Text safe to print in an assertion message."""
    for needle in sorted(needles, key=lambda n: -len(n.value)):
        text = text.replace(needle.value.decode(), f"<{needle.label}>")
    return text


def written_files(roots, since: float, prune=frozenset()) -> set[Path]:
    """Regular files under roots created or changed since `since` (ctime too: it catches a file
    whose mtime was set back). find(1): a Python walk of a home with toolchains takes 15 s."""
    stamp = f"@{since:.3f}"
    cmd = ["find", *[str(r) for r in roots if r.exists()]]
    for path in sorted(prune):
        cmd += ["-path", str(path), "-prune", "-o"]
    cmd += ["-type", "f", "(", "-newermt", stamp, "-o", "-newerct", stamp, ")", "-print0"]
    # Exit 1 is a file that vanished or an unreadable directory while walking: what remains is listed.
    proc = subprocess.run(cmd, capture_output=True, check=False)
    assert proc.returncode in (0, 1), proc.stderr.decode(errors="replace")
    return {Path(p.decode()) for p in proc.stdout.split(b"\0") if p}


def every_file(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() and not p.is_symlink()}
