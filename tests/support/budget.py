"""The suite's time budget (tests/BUDGET): `make test` prints its wall time at the end of the
last pytest run and fails when it went past the limit, well before CI's own limit stops it."""
from __future__ import annotations

import re
from pathlib import Path

BUDGET_FILE = Path(__file__).resolve().parents[1] / "BUDGET"


def read_budget(path: Path = BUDGET_FILE) -> dict[str, float]:
    """KEY=MINUTES lines (comments with #); every value a positive number."""
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([a-z_]+)\s*=\s*([0-9]+(?:\.[0-9]+)?)", line)
        if not match or float(match.group(2)) <= 0:
            raise ValueError(f"{path}:{number}: {line!r} is not KEY=MINUTES (a positive number)")
        values[match.group(1)] = float(match.group(2))
    for key in ("measured_minutes", "limit_minutes"):
        if key not in values:
            raise ValueError(f"{path} has no {key}=MINUTES line")
    return values


def verdict(elapsed_s: float, budget: dict[str, float]) -> tuple[bool, str]:
    """(within the limit, the line to print)."""
    minutes = elapsed_s / 60
    line = (f"make test wall time {int(elapsed_s // 60)}m{int(elapsed_s % 60):02d}s; measured here "
            f"{budget['measured_minutes']:g} min, limit {budget['limit_minutes']:g} min (tests/BUDGET)")
    if minutes > budget["limit_minutes"]:
        return False, f"OVER BUDGET: {line}. Make the suite faster before adding to it."
    if minutes > budget["measured_minutes"] * 1.25:
        return True, f"slower than measured: {line} (a loaded machine, or a slower suite)"
    return True, line
