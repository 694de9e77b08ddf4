"""The controller's memory while a command runs: the process tree's proportional set size (PSS,
so that pages the forks share are counted once), sampled from /proc."""
from __future__ import annotations

import os
import threading
from pathlib import Path


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the fields start after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def tree(pid: int) -> list[int]:
    children, out, todo = _children_map(), [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def pss_kb(pid: int) -> int:
    """PSS of one process in kB (its RSS where smaps_rollup cannot be read); 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeMemory:
    """Samples the tree under `pid` every `interval` seconds until stop(); peak_mb and peak_procs."""

    def __init__(self, pid: int, interval: float = 0.5):
        self.pid, self.interval = pid, interval
        self.peak_kb, self.peak_procs = 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> "TreeMemory":
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            pids = tree(self.pid)
            self.peak_kb = max(self.peak_kb, sum(pss_kb(p) for p in pids))
            self.peak_procs = max(self.peak_procs, len(pids))
            self._stop.wait(self.interval)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {"peak_pss_mb": round(self.peak_kb / 1024, 1), "peak_procs": self.peak_procs}
