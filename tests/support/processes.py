"""Find the CLI processes a session runs, and what they started (Linux /proc)."""

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path


def cli_pids(directory: Path, parent: int | None = None) -> list[int]:
    """CLI processes started by `parent` (default: this process) working in `directory`."""
    target = str(directory.resolve())
    return [pid for pid in _live_children(parent) if _read(lambda: os.readlink(f"/proc/{pid}/cwd")) == target]


def cli_children(parent: int | None = None) -> list[int]:
    """Live Claude Code CLI processes whose parent is `parent` (default: this process), wherever they run."""
    return children("claude", parent)


def children(fragment: str, parent: int | None = None) -> list[int]:
    """Live processes whose parent is `parent` (default: this process) with `fragment` in their command line."""
    return [pid for pid in _live_children(parent) if fragment in cmdline(pid)]


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


def session_processes(sessions_dir: Path) -> list[int]:
    """Live processes anywhere (re-parented to init too) whose HOME is a session's under `sessions_dir`:
    the CLIs of a gateway using it and whatever they started, which inherits the CLI's environment."""
    prefix = f"HOME={sessions_dir.resolve()}{os.sep}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    environ = f.read().split(b"\0")
            except OSError:
                continue
            if any(e.startswith(prefix) for e in environ) and alive(int(entry)):
                found.append(int(entry))
    return found


async def session_processes_once(sessions_dir: Path, ready: Callable[[list[int]], bool], within_s: float = 10) -> list[int]:
    """`session_processes(sessions_dir)` as soon as `ready` holds for them (what they hold after `within_s` otherwise)."""
    deadline = time.monotonic() + within_s
    found = session_processes(sessions_dir)
    while not ready(found) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        found = session_processes(sessions_dir)
    return found


def cmdline(pid: int) -> str:
    """A process's command line, arguments separated by spaces ("" once it is gone)."""
    return _read(lambda: Path(f"/proc/{pid}/cmdline").read_text(errors="replace")).replace("\0", " ")


def listening_sockets(pids: list[int]) -> list[Path]:
    """The Unix socket files the `socat UNIX-LISTEN:<path>,...` among `pids` listen on."""
    found = []
    for pid in pids:
        for arg in cmdline(pid).split():
            if arg.startswith("UNIX-LISTEN:"):
                found.append(Path(arg.removeprefix("UNIX-LISTEN:").split(",")[0]))
    return found


async def survivors(pids: Iterable[int], within_s: float) -> list[int]:
    """Those of `pids` still alive after `within_s` seconds (sooner when none is)."""
    deadline = time.monotonic() + within_s
    left = [pid for pid in pids if alive(pid)]
    while left and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        left = [pid for pid in left if alive(pid)]
    return left


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
