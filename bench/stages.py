"""Where a bench server's CPU goes, by stage: a sampling profiler, on only in the bench (`BENCH_STAGES=<file>`).

`setitimer(ITIMER_PROF)` sends the process SIGPROF after every `INTERVAL_S` of CPU it uses, so
samples fall in proportion to CPU, however short each burst of work is (a paced event is ~50 µs of
work between idle waits: a sampling thread, which needs the GIL, never sees those). The handler runs
in the main thread at the next bytecode and files the interrupted stack under the stage of its
innermost recognised frame (`RULES`). A stack with nothing above the loop's run() is CPU the loop
spent in C (uvloop: epoll, timers, handles): `loop`. A thread writes the cumulative counts to the
file every `WRITE_S` (replaced atomically); the benchmark reads it before and after a run and
splits the run's CPU by the samples' shares.

Sampling is right on average over many samples, not per event. Work in C is charged to the Python
frame that called it (msgspec's encode to the feed, the socket send to its caller), and C work of
the loop between Python frames to the next frame that runs. The handler costs a few µs per sample
(a few % of the CPU, charged to `other`).
"""

import collections
import json
import os
import re
import signal
import threading
import time
from pathlib import Path
from types import FrameType

ENV = "BENCH_STAGES"
INTERVAL_S = 0.001
WRITE_S = 0.05
STAGES = ("sdk", "session", "encode+log", "send", "loop", "other")
# (path fragment, stage), tried on each frame from the innermost out; the first frame that matches
# decides. Library frames that serve several stages are passed over, so their caller decides: asyncio's
# (an Event.set, a call_soon), anyio's (the SDK's subprocess and memory streams, sse-starlette's task
# group) and json's (the SDK's transport decodes with it, and the gateway's when msgspec can't).
RULES = (
    ("/gateway/events/", "encode+log"),
    ("/gateway/transports/outbox.py", "send"),
    ("/gateway/sessions/transport.py", "sdk"),  # the SDK's transport with the gateway's read side
    ("/gateway/sessions/", "session"),
    ("/gateway/wire/", "session"),
    ("/bench/synthetic_agent.py", "sdk"),  # the synthetic agent stands in for the SDK
    ("/claude_agent_sdk/", "sdk"),
    ("/gateway/transports/", "send"),
    ("/uvicorn/", "send"),
    ("/websockets/", "send"),
    ("/starlette/", "send"),
    ("/sse_starlette/", "send"),
    ("/h11/", "send"),
)
SHARED = ("/asyncio/", "/anyio/", "/json/")
# The frames that run the loop: reaching one means nothing of ours runs above it (the loop's own work).
LOOP_FRAMES = {"run", "run_until_complete", "run_forever", "_run_once"}
_LIBRARY = re.compile(r"^.*/(site-packages|lib/python3\.\d+)/")  # a file's name below its library root


def stage_of(frame: FrameType | None) -> tuple[str, str]:
    """The stage of the innermost frame that decides, and the innermost frame's file (below its library root)."""
    innermost = _LIBRARY.sub("", frame.f_code.co_filename) if frame is not None else ""
    while frame is not None:
        code = frame.f_code
        if "/asyncio/" in code.co_filename and code.co_name in LOOP_FRAMES:
            return "loop", ""
        if not any(shared in code.co_filename for shared in SHARED):
            for fragment, stage in RULES:
                if fragment in code.co_filename:
                    return stage, innermost
        frame = frame.f_back
    return "other", ""


class Sampler:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.samples = dict.fromkeys(STAGES, 0)
        self.sdk_files: collections.Counter[str] = collections.Counter()  # the SDK stage's samples by file

    def sample(self, signum: int, frame: FrameType | None) -> None:
        stage, where = stage_of(frame)
        self.samples[stage] += 1
        if stage == "sdk":
            self.sdk_files[where] += 1

    def write_forever(self) -> None:
        while True:
            time.sleep(WRITE_S)
            report = {"samples": self.samples, "sdk_files": self.sdk_files, "sampler_ns": time.thread_time_ns()}
            scratch = self.path.with_suffix(".tmp")
            scratch.write_text(json.dumps(report))
            os.replace(scratch, self.path)


def install(path: str) -> None:
    """Start sampling this process (from the main thread, before its event loop runs)."""
    sampler = Sampler(Path(path))
    signal.signal(signal.SIGPROF, sampler.sample)
    signal.setitimer(signal.ITIMER_PROF, INTERVAL_S, INTERVAL_S)
    threading.Thread(target=sampler.write_forever, name="bench-stages", daemon=True).start()


def read(path: Path) -> dict[str, float]:
    """The cumulative counts: samples per stage, per SDK file (`sdk:<file>`), and `sampler`, the writer
    thread's own CPU seconds."""
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    files = {f"sdk:{name}": count for name, count in report["sdk_files"].items()}
    return {**report["samples"], **files, "sampler": report["sampler_ns"] / 1e9}


def difference(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items()}
