"""Find the CLI processes a session runs (Linux /proc)."""

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path


def cli_pids(directory: Path, parent: int | None = None) -> list[int]:
    """CLI processes started by `parent` (default: this process) working in `directory`."""
    target = str(directory.resolve())
    return [pid for pid in _live_children(parent) if _read(lambda: os.readlink(f"/proc/{pid}/cwd")) == target]


def cli_children(parent: int | None = None) -> list[int]:
    """Live Claude Code CLI processes whose parent is `parent` (default: this process), wherever they run."""
    return [pid for pid in _live_children(parent) if "claude" in _read(lambda: Path(f"/proc/{pid}/cmdline").read_text(errors="replace"))]


def descendants(root: int | None = None) -> dict[int, str]:
    """Every process below `root` (default: this process), at any depth, with its command line."""
    root = os.getpid() if root is None else root
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                children.setdefault(_ppid(int(entry)), []).append(int(entry))
    below, found = list(children.get(root, [])), {}
    while below:
        pid = below.pop()
        found[pid] = cmdline(pid)
        below.extend(children.get(pid, []))
    return found


def descendant_running(fragment: str, root: int | None = None) -> bool:
    """Whether a process below `root` (default: this process), at any depth, has `fragment` in its command line."""
    return any(fragment in command for command in descendants(root).values())


def cmdline(pid: int) -> str:
    """A process's command line, arguments separated by spaces ("" once it is gone)."""
    return _read(lambda: Path(f"/proc/{pid}/cmdline").read_text(errors="replace")).replace("\0", " ")


def _read(read: Callable[[], str]) -> str:
    """A /proc read of a process that may have exited meanwhile ("" then)."""
    try:
        return read()
    except OSError:
        return ""


def _live_children(parent: int | None) -> Iterator[int]:
    """Live child processes of `parent`; ones that vanish while we look are skipped."""
    parent = os.getpid() if parent is None else parent
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if _ppid(int(entry)) == parent and alive(int(entry)):
                yield int(entry)
        except OSError:
            continue


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(") ", 1)[1].split()[1])


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except OSError:
        return False
