"""No process outlives its CLI's runner or its gateway, however either ends.

Every CLI starts through `launch-cli`, which gives it a session (and process group) of its own, so
a terminal's Ctrl-C reaches only the gateway, and has the kernel SIGKILL it when the gateway dies
(`setpriv --pdeathsig`). What a CLI starts (the `socat` of its sandbox's network proxy, `npm root`)
is out of the kernel's reach: it is re-parented to init when the CLI dies. So every CLI carries a
marker in its environment, `AGENT_GATEWAY_CLI=<owner>/<n>`, which what it starts inherits, and:

- when a runner's CLI has ended (exit, crash, close, reset, shutdown, cancelled start), the runner
  ends every process still carrying that CLI's marker;
- one watchdog process per gateway waits for the end of a pipe only the gateway holds, so it wakes
  however the gateway dies (SIGKILL too), and ends every process carrying the gateway's marker;
- a gateway starting up ends marked processes left under its sessions directory by gateways that
  are gone (their watchdog died with them).

Only processes carrying a marker are ever signalled, so nothing that isn't ours is touched; a zombie
has no environment, so it never matches. Ending is SIGTERM (socat removes its socket file then),
then SIGKILL for what is left after a grace period. Linux only (/proc).

The watchdog runs this file as a script (`python -I -S`), so it imports only a few light modules
of the standard library (9 MB RSS; pathlib and secrets would add 6).
"""

import os
import signal
import sys
import time
from collections.abc import Callable

MARKER = "AGENT_GATEWAY_CLI"
EXEC = "AGENT_GATEWAY_CLI_EXEC"  # the CLI that LAUNCHER runs
_MARKER_ENTRY = MARKER.encode() + b"="
LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launch-cli")
GRACE_S = 1.0

Select = Callable[[str, str], bool]
"""Whether to end a process, from its marker value and its HOME."""


def new_owner() -> str:
    """A gateway's name in its CLIs' markers: `<pid>.<start time>:<random>`. The process part names
    this process for good (a reused pid has another start time); the random part tells apart the
    gateways of one process (tests run several)."""
    return f"{_process(os.getpid())}:{os.urandom(4).hex()}"


def _process(pid: int) -> str:
    return f"{pid}.{_start_time(pid)}"


def _owner_alive(owner: str) -> bool:
    process = owner.partition(":")[0]
    pid = process.partition(".")[0]
    return pid.isdigit() and _process(int(pid)) == process


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _marked(pid: int) -> tuple[str, str] | None:
    """The marker value and HOME of a live process carrying a marker, else None."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read().split(b"\0")
    except OSError:  # gone, or not ours to read
        return None
    marker = home = None
    for entry in environ:
        if entry.startswith(_MARKER_ENTRY):
            marker = entry[len(_MARKER_ENTRY):].decode(errors="replace")
        elif entry.startswith(b"HOME="):
            home = entry[5:].decode(errors="replace")
    return None if marker is None else (marker, home or "")


def find(select: Select) -> list[int]:
    """Live processes whose marker and HOME `select` picks (never this process)."""
    own = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != own:
            marked = _marked(int(entry))
            if marked is not None and select(*marked):
                found.append(int(entry))
    return found


def end(select: Select, grace_s: float = GRACE_S) -> list[int]:
    """End every process `select` picks: SIGTERM, then SIGKILL what is left after `grace_s`.
    Blocking (it reads /proc and waits): call it in a thread. Returns the pids it signalled."""
    pids = find(select)
    _signal(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    left = pids
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = [pid for pid in left if _still(pid, select)]
    _signal([pid for pid in left if _still(pid, select)], signal.SIGKILL)
    return pids


def _still(pid: int, select: Select) -> bool:
    marked = _marked(pid)
    return marked is not None and select(*marked)


def _signal(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def of_cli(marker: str) -> Select:
    return lambda value, home: value == marker


def of_owner(owner: str) -> Select:
    return lambda value, home: value.startswith(owner + "/")


def left_behind(sessions_root: str) -> Select:
    """Processes of gateways that are gone, whose session lives under `sessions_root` (absolute)."""
    prefix = sessions_root.rstrip(os.sep) + os.sep

    def select(value: str, home: str) -> bool:
        return home.startswith(prefix) and not _owner_alive(value.partition("/")[0])

    return select


def watch(owner: str) -> None:
    """The watchdog: wait for the gateway's end of stdin to close, then end what it left."""
    while os.read(0, 4096):
        pass
    end(of_owner(owner))


if __name__ == "__main__":
    watch(sys.argv[1])
