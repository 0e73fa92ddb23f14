"""The streaming benchmark: `python -m bench.run [--quick] [--real]` (or `python bench/run.py`) from the repo root.

Starts the gateway (real app, synthetic agent; with `--real` the real path: `SdkRunner` and the SDK
reading a stand-in CLI, bench/standin_cli.py) and a bare Starlette WebSocket (bench/baseline_app.py)
as two server processes, then drives each in turn from a third process with the same client code:
for 1, 10 and 50 sessions, a burst as fast as the agent produces it (throughput, nothing lost) and a
stream paced at 4,000 text deltas/s in total (added latency); with `--real` also 100 deltas/s in
each of the most sessions. Every figure stands beside the baseline's from the same run; `--real`
adds where the gateway's CPU goes, by stage (bench/stages.py). With `--redis`, a gateway with the
Redis log (a redis-server of the run's own) takes its turn beside them, and two such replicas
measure resuming from Redis on a replica that doesn't run the session (bench/resume.py). See
bench/README.md for the columns.
"""

import argparse
import contextlib
import dataclasses
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import hotpath, load, resume, stages
from bench.serve import TOKEN
from bench.synthetic_agent import Burst
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Scenario:
    name: str
    sessions: int
    burst: Burst  # what each session is asked for
    sse: bool = False  # the gateway's sessions each have an SSE reader beside the WebSocket


@dataclass(frozen=True)
class Row:
    """A scenario's runs; the figures shown are from the median run of each server, losses from all runs."""

    scenario: Scenario
    gateway_runs: list[load.Result]
    baseline_runs: list[load.Result]
    redis_runs: list[load.Result] = field(default_factory=list)  # the gateway with the Redis log (--redis)
    redis_server_cpu_s: list[float] = field(default_factory=list)  # redis-server's CPU during each of those

    @staticmethod
    def _median(runs: list[load.Result], paced: bool) -> load.Result:
        ranked = sorted(runs, key=(lambda r: r.percentile(0.99)) if paced else (lambda r: r.rate))
        return ranked[len(ranked) // 2]

    @property
    def gateway(self) -> load.Result:
        return self._median(self.gateway_runs, bool(self.scenario.burst.rate))

    @property
    def baseline(self) -> load.Result:
        return self._median(self.baseline_runs, bool(self.scenario.burst.rate))

    @property
    def redis(self) -> load.Result:
        return self._median(self.redis_runs, bool(self.scenario.burst.rate))

    @property
    def lost(self) -> tuple[int, int]:
        return sum(r.lost for r in self.gateway_runs + self.redis_runs), sum(r.lost for r in self.baseline_runs)

    @property
    def disorder(self) -> int:
        return sum(r.disorder for r in self.gateway_runs + self.baseline_runs + self.redis_runs)


def scenarios(sessions: list[int], burst_events: int, rate: float, paced_s: float, chunk: int, each_rate: float = 0.0) -> list[Scenario]:
    """Bursts of `burst_events` deltas in total, then `rate` deltas/s in total for `paced_s`, split over the
    sessions; then, with `each_rate`, that many deltas/s in each of the most sessions."""
    bursts = [Scenario(f"burst x{n}", n, Burst(events=max(1, burst_events // n), chunk=chunk)) for n in sessions]
    paced = [
        Scenario(f"{rate:,.0f}/s x{n}", n, Burst(events=max(1, int(rate * paced_s / n)), rate=rate / n, chunk=chunk))
        for n in sessions
    ]
    n = max(sessions)
    each = [Scenario(f"{each_rate:,.0f}/s each x{n}", n, Burst(events=max(1, int(each_rate * paced_s)), rate=each_rate, chunk=chunk))] if each_rate else []
    return bursts + paced + each


def with_sse(plan: list[Scenario]) -> list[Scenario]:
    """The first burst and the last scenario again, each session with an SSE reader beside its WebSocket."""
    return plan + [dataclasses.replace(s, name=s.name + " +sse", sse=True) for s in (plan[0], plan[-1])]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(kind: str, loop: str = "auto", *options: str, stages_file: str | None = None) -> Iterator[tuple[int, int]]:
    """Run `python -m bench.serve kind PORT LOOP OPTIONS…`; yields (port, pid) once it accepts connections."""
    port = _free_port()
    env = {**os.environ, stages.ENV: stages_file} if stages_file else None
    proc = subprocess.Popen([sys.executable, "-m", "bench.serve", kind, str(port), loop, *options], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{kind} server exited with {proc.returncode}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{kind} server did not start")
            time.sleep(0.05)
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(30)


def run_all(
    plan: list[Scenario], repeat: int = 1, loop: str = "auto", real: bool = False, redis: RedisServer | None = None,
    resume_sizes: tuple[int, ...] = (300, 10_000), resume_repeats: int = 50,
) -> tuple[list[Row], list[resume.Resume]]:
    """Each scenario `repeat` times, the gateway and the baseline taking turns (and, with `redis`, the
    gateway with the Redis log), all on the same event loop; then, with `redis`, the resume benchmark.

    `real`: the gateway on the real path, its CPU sampled by stage; its sessions are measured from
    when their CLIs are up, and the sampler's own CPU is left out of its figures.
    """
    rows = []
    kind = "real" if real else "gateway"
    with contextlib.ExitStack() as stack:
        stages_file = str(Path(stack.enter_context(tempfile.TemporaryDirectory())) / "stages.json") if real else None
        servers = {
            "gateway": stack.enter_context(server(kind, loop, stages_file=stages_file)),
            "baseline": stack.enter_context(server("baseline", loop)),
        }
        if redis is not None:
            servers["redis"] = stack.enter_context(server(kind, loop, "--redis-url", redis.url, "--replica-id", "bench-burst"))
        pool = stack.enter_context(ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")))

        def measure(name: str, sessions: int, burst: Burst, sse: bool = False) -> load.Result:
            port, pid = servers[name]
            sampled = stages_file if name == "gateway" else None
            result = pool.submit(load.run, HOST, port, TOKEN, pid, sessions, burst, 120.0, sampled is not None, sampled, sse).result()
            return dataclasses.replace(result, server_cpu_s=result.server_cpu_s - result.stages.get("sampler", 0.0))

        for name in servers:  # warm up: imports, first connections, caches
            measure(name, 2, Burst(events=2000))
        for scenario in plan:
            row = Row(scenario, [], [])
            for _ in range(repeat):
                row.gateway_runs.append(measure("gateway", scenario.sessions, scenario.burst, scenario.sse))
                row.baseline_runs.append(measure("baseline", scenario.sessions, scenario.burst))
                if redis is not None:
                    assert redis.proc is not None
                    before = load.cpu_seconds(redis.proc.pid)
                    row.redis_runs.append(measure("redis", scenario.sessions, scenario.burst, scenario.sse))
                    row.redis_server_cpu_s.append(load.cpu_seconds(redis.proc.pid) - before)
            rows.append(row)
            print(f"  {scenario.name}: done", file=sys.stderr, flush=True)
    resumes: list[resume.Resume] = []
    if redis is not None and resume_sizes:
        with contextlib.ExitStack() as stack:
            # The log keeps every event of the largest resume (the default bound evicts in 1/64 steps).
            bound = ("--log-max-events", str(2 * max(resume_sizes)))
            owner, other = (stack.enter_context(server("gateway", loop, "--redis-url", redis.url, "--replica-id", name, *bound))[0] for name in ("bench-owner", "bench-other"))
            pool = stack.enter_context(ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")))
            resumes = pool.submit(resume.measure, owner, other, TOKEN, list(resume_sizes), resume_repeats).result()
            print("  resume: done", file=sys.stderr, flush=True)
    return rows, resumes


def loop_name(loop: str) -> str:
    """What uvicorn's `auto` picks: uvloop when it is importable."""
    if loop != "auto":
        return loop
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def _si(x: float) -> str:
    return f"{x / 1000:,.0f}k" if x >= 10_000 else f"{x:,.0f}"


def table(rows: list[Row]) -> str:
    w = max(13, *(len(row.scenario.name) + 1 for row in rows))
    head = (
        f"{'scenario':<{w}}{'gw ev/s':>9}{'base ev/s':>10}{'ratio':>7}  {'gw ev/cpu-s':>11}{'base ev/cpu-s':>14}{'ratio':>7}"
        f"  {'gw µs/ev':>8}{'base':>6}  {'gw p50/p99 ms':>14}{'base p50/p99 ms':>16}  {'ev/msg':>6}{'wake/ev gw/base':>16}{'lost':>9}  {'cpu gw/client':>13}  {'kernel gw/base':>14}"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        g, b = row.gateway, row.baseline
        lost = "{}/{}".format(*row.lost) + ("!" if row.disorder else "")
        lines.append(
            f"{row.scenario.name:<{w}}{_si(g.rate):>9}{_si(b.rate):>10}{g.rate / b.rate:>7.2f}"
            f"  {_si(g.per_core):>11}{_si(b.per_core):>14}{g.per_core / b.per_core:>7.2f}"
            f"  {1e6 / g.per_core:>8.1f}{1e6 / b.per_core:>6.1f}"
            f"  {g.percentile(0.5) / 1000:>6.2f}/{g.percentile(0.99) / 1000:<7.2f}{b.percentile(0.5) / 1000:>8.2f}/{b.percentile(0.99) / 1000:<7.2f}"
            f"  {g.events / max(1, g.messages):>6.1f}{g.server_wakeups / max(1, g.delivered):>10.2f}/{b.server_wakeups / max(1, b.delivered):<5.2f}{lost:>9}  {g.server_cpu_s / max(g.seconds, 1e-9):>6.0%}/{g.client_cpu_s / max(g.seconds, 1e-9):<6.0%}"
            f"  {g.server_sys_s / max(g.server_cpu_s, 1e-9):>6.0%}/{b.server_sys_s / max(b.server_cpu_s, 1e-9):<7.0%}"
        )
    for row in rows:
        if row.lost != (0, 0) or row.disorder:
            codes = sorted({code for r in row.gateway_runs + row.baseline_runs + row.redis_runs for code in r.close_codes})
            lines.append(f"{row.scenario.name}: {row.lost[0]}/{row.lost[1]} lost, {row.disorder} out of order; close codes {codes}")
    return "\n".join(lines)


def redis_table(rows: list[Row]) -> str:
    """The gateway with the Redis log beside the in-memory one and the bare endpoint, from the same run."""
    w = max(13, *(len(row.scenario.name) + 1 for row in rows))
    head = (
        f"{'Redis log':<{w}}{'ev/s':>9}  {'ev/cpu-s':>9}{'vs mem':>8}{'vs base':>8}  {'+redis-server':>13}{'ev/cpu-s':>9}"
        f"  {'p50/p99 ms':>12}  {'ev/msg':>6}{'lost':>6}"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        r = row.redis
        redis_cpu = sorted(row.redis_server_cpu_s)[len(row.redis_server_cpu_s) // 2]
        both_cpu = r.server_cpu_s + redis_cpu
        both_per_core = r.delivered / both_cpu if both_cpu > 0 else float("nan")
        lost = sum(x.lost for x in row.redis_runs)
        lines.append(
            f"{row.scenario.name:<{w}}{_si(r.rate):>9}  {_si(r.per_core):>9}{r.per_core / row.gateway.per_core:>8.2f}{r.per_core / row.baseline.per_core:>8.2f}"
            f"  {redis_cpu:>12.2f}s{_si(both_per_core):>9}"
            f"  {r.percentile(0.5) / 1000:>5.2f}/{r.percentile(0.99) / 1000:<6.2f}  {r.events / max(1, r.messages):>6.1f}{lost:>6}"
        )
    return "\n".join(lines)


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as directory:
        server = RedisServer(Path(directory)).start()
        try:
            yield server
        finally:
            server.stop()


def redis_memory(redis: RedisServer) -> str:
    """Memory per 1,000 events of the logs the run left in Redis (closed sessions keep theirs for a while)."""
    import redis as redis_py

    with redis_py.Redis.from_url(redis.url) as client:
        logs = [key for key in client.scan_iter(match="*:log", count=1000) if client.type(key) == b"stream"]
        events = sum(client.xlen(key) for key in logs)
        used = sum(client.memory_usage(key, samples=0) or 0 for key in logs)
    return f"Redis memory: {used / max(1, events) * 1000:,.0f} bytes per 1,000 events ({events:,} events in {len(logs)} session logs)"


STAGE_COLUMNS = (
    ("sdk", "SDK read+parse"), ("session", "session+translate"), ("encode+log", "encode+log"), ("send", "outbox+send"),
    ("loop", "event loop"), ("other", "other"),
)


def stage_table(rows: list[Row]) -> str:
    """The gateway's CPU per delta by stage, from its median run of each scenario: the run's CPU split by
    the stage sampler's shares (bench/stages.py)."""
    w = max(17, *(len(row.scenario.name) + 1 for row in rows))
    head = f"{'scenario':<{w}}{'µs/ev':>7}  " + "".join(f"{title:>19}" for _, title in STAGE_COLUMNS) + f"{'samples':>9}"
    lines = [head, "-" * len(head)]
    for row in rows:
        g = row.gateway
        samples = sum(g.stages.get(k, 0.0) for k, _ in STAGE_COLUMNS)
        if not samples or not g.delivered:
            continue
        total = g.server_cpu_s * 1e6 / g.delivered
        cells = "".join(f"{total * g.stages.get(k, 0.0) / samples:>12.1f} ({g.stages.get(k, 0.0) / samples:>3.0%})" for k, _ in STAGE_COLUMNS)
        lines.append(f"{row.scenario.name:<{w}}{total:>7.1f}  {cells}{samples:>9.0f}")
    files: dict[str, float] = {}
    for row in rows:
        for key, count in row.gateway.stages.items():
            if key.startswith("sdk:"):
                files[key[4:]] = files.get(key[4:], 0.0) + count
    if files:
        top = sorted(files.items(), key=lambda kv: -kv[1])[:6]
        lines.append("SDK read+parse by file, all rows: " + ", ".join(f"{name} {count / sum(files.values()):.0%}" for name, count in top))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller bursts and shorter paced runs (~20 s in all)")
    parser.add_argument("--sessions", default="1,10,50", help="session counts, comma separated [1,10,50]")
    parser.add_argument("--burst", type=int, help="text deltas per burst scenario, over all sessions [100000; quick 20000]")
    parser.add_argument("--rate", type=float, default=4000.0, help="text deltas/s in the paced scenarios, over all sessions [4000]")
    parser.add_argument("--paced-seconds", type=float, help="length of each paced run [2; quick 0.5]")
    parser.add_argument("--repeat", type=int, help="runs of each scenario per server; the median is shown [3; quick 1]")
    parser.add_argument("--chunk", type=int, default=1, help="messages the agent delivers per event-loop turn [1, like the SDK]")
    parser.add_argument("--real", action="store_true", help="the gateway on the real path: SdkRunner and the SDK reading bench/standin_cli.py")
    parser.add_argument("--each-rate", type=float, help="a paced scenario at this many deltas/s in each of the most sessions [--real: 100]")
    parser.add_argument("--loop", default="auto", choices=("auto", "asyncio", "uvloop"), help="both servers' event loop, as `serve --event-loop` [auto]")
    parser.add_argument("--redis", action="store_true", help="also the gateway with the Redis log, and resuming from Redis on another replica")
    parser.add_argument("--resume-sizes", default="300,10000", help="events replayed per resume, comma separated; empty: none [300,10000]")
    parser.add_argument("--resume-repeats", type=int, help="attaches per resume size and replica [50; quick 10]")
    args = parser.parse_args(argv)
    plan = scenarios(
        [int(n) for n in args.sessions.split(",")],
        args.burst or (20_000 if args.quick else 100_000),
        args.rate,
        args.paced_seconds or (0.5 if args.quick else 2.0),
        args.chunk,
        args.each_rate if args.each_rate is not None else (100.0 if args.real else 0.0),
    )
    started = time.monotonic()
    hot = hotpath.measure(events=5_000 if args.quick else 20_000)
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(redis_server()) if args.redis else None
        rows, resumes = run_all(
            with_sse(plan) if args.real else plan, args.repeat or (1 if args.quick else 3), args.loop, args.real, redis,
            tuple(int(n) for n in args.resume_sizes.split(",") if n), args.resume_repeats or (10 if args.quick else 50),
        )
        memory = redis_memory(redis) if redis is not None else ""
    print(table(rows))
    if args.real:
        print("\nreal path, the gateway's CPU per delta by stage (µs, share of the main thread; sampled, bench/stages.py):")
        print(stage_table(rows))
    if args.redis:
        print("\nthe gateway with the Redis log, beside the in-memory one (vs mem) and the bare endpoint (vs base):")
        print(redis_table(rows))
        print(resume.table(resumes))
        print(memory)
    print(
        f"hot path in process (no sockets, best of 5): agent {hot.agent_us:.2f} µs/message; gateway on_message -> outbox"
        f" {hot.emit_us:.2f} µs/event; sender take + join {hot.take_us:.2f} µs/event in batches of {hot.batch}"
    )
    print(
        f"({time.monotonic() - started:.0f} s; event loop {loop_name(args.loop)};"
        f" gateway {'on the real path (SdkRunner, ClaudeSDKClient, bench/standin_cli.py)' if args.real else 'with the synthetic agent'}"
        " and baseline each in its own process, clients in a third)"
    )
    return rows


if __name__ == "__main__":
    main()
