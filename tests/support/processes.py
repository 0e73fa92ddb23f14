"""Find the CLI processes a session runs, by their working directory (Linux /proc)."""

import os
from pathlib import Path


def cli_pids(directory: Path, parent: int | None = None) -> list[int]:
    """CLI processes started by `parent` (default: this process) working in `directory`."""
    target = str(directory.resolve())
    parent = os.getpid() if parent is None else parent
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/cwd") == target and _ppid(int(entry)) == parent and alive(int(entry)):
                found.append(int(entry))
        except OSError:
            continue
    return found


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(") ", 1)[1].split()[1])


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except OSError:
        return False
