"""The chart of make bench: wall time against hosts, rotation and bare push, one line per forks."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=wrong-import-position

from bench.analysis import derived  # noqa: E402  pylint: disable=wrong-import-position


def write_chart(pairs: list[dict], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for forks in sorted({p["forks"] for p in pairs}):
        mine = sorted((p for p in pairs if p["forks"] == forks), key=lambda p: p["hosts"])
        for key, label, style in (("rotation_s", "rotation", "-o"), ("push_s", "bare push", "--s")):
            points = [(p["hosts"], derived(p)[key]) for p in mine if derived(p)[key] is not None]
            if points:
                ax.plot([h for h, s in points], [s for h, s in points], style, label=f"{label}, forks {forks}")
    ax.set_xlabel("hosts")
    ax.set_ylabel("wall time (s)")
    ax.set_title("rekey.aws: one forced rotation vs a bare push (2 shared cores)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
