"""The streaming benchmark: `python -m bench.run [--quick] [--real]` (or `python bench/run.py`) from the repo root.

Starts the gateway (real app, synthetic agent; with `--real` the real path: `SdkRunner` and the SDK
reading a stand-in CLI, bench/standin_cli.py) and a bare Starlette WebSocket (bench/baseline_app.py)
as two server processes, then drives each in turn from a third process with the same client code:
for 1, 10 and 50 sessions, a burst as fast as the agent produces it (throughput, nothing lost) and a
stream paced at 4,000 text deltas/s in total (added latency); with `--real` also 100 deltas/s in
each of the most sessions. Every figure stands beside the baseline's from the same run; `--real`
adds where the gateway's CPU goes, by stage (bench/stages.py). `--previous DIR` runs a third server, the
same gateway from another checkout (the code before a change), in the same turns. See bench/README.md.
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
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import hotpath, load, stages
from bench.serve import TOKEN
from bench.synthetic_agent import Burst

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
    previous_runs: list[load.Result] = field(default_factory=list)  # `--previous`: the gateway from another checkout

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
    def previous(self) -> load.Result:
        return self._median(self.previous_runs, bool(self.scenario.burst.rate))

    @property
    def lost(self) -> tuple[int, int]:
        return sum(r.lost for r in self.gateway_runs), sum(r.lost for r in self.baseline_runs)

    @property
    def disorder(self) -> int:
        return sum(r.disorder for r in self.gateway_runs + self.baseline_runs)


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
def server(kind: str, loop: str = "auto", stages_file: str | None = None, root: Path = ROOT) -> Iterator[tuple[int, int]]:
    """Run `python -m bench.serve kind PORT LOOP` in the checkout `root` (whose `gateway` it imports); yields (port, pid)
    once it accepts connections."""
    port = _free_port()
    env = {**os.environ, stages.ENV: stages_file} if stages_file else None
    proc = subprocess.Popen([sys.executable, "-m", "bench.serve", kind, str(port), loop], cwd=root, env=env)
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


def run_all(plan: list[Scenario], repeat: int = 1, loop: str = "auto", real: bool = False, previous: Path | None = None) -> list[Row]:
    """Each scenario `repeat` times, the gateway and the baseline taking turns, both on the same event loop.

    `real`: the gateway on the real path, its CPU sampled by stage; its sessions are measured from
    when their CLIs are up, and the sampler's own CPU is left out of its figures. `previous`: another
    checkout's gateway takes its turn after the baseline's, measured as the gateway is.
    """
    rows = []
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        stages_files = {"gateway": str(tmp / "gateway.json"), "previous": str(tmp / "previous.json")} if real else {}
        gateway = "real" if real else "gateway"
        servers = {
            "gateway": stack.enter_context(server(gateway, loop, stages_files.get("gateway"))),
            "baseline": stack.enter_context(server("baseline", loop)),
        }
        if previous is not None:
            servers["previous"] = stack.enter_context(server(gateway, loop, stages_files.get("previous"), previous))
        pool = stack.enter_context(ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")))

        def measure(name: str, sessions: int, burst: Burst, sse: bool = False) -> load.Result:
            port, pid = servers[name]
            sampled = stages_files.get(name)
            result = pool.submit(load.run, HOST, port, TOKEN, pid, sessions, burst, 120.0, sampled is not None, sampled, sse).result()
            return dataclasses.replace(result, server_cpu_s=result.server_cpu_s - result.stages.get("sampler", 0.0))

        for kind in servers:  # warm up: imports, first connections, caches
            measure(kind, 2, Burst(events=2000))
        for scenario in plan:
            row = Row(scenario, [], [])
            for _ in range(repeat):
                row.gateway_runs.append(measure("gateway", scenario.sessions, scenario.burst, scenario.sse))
                row.baseline_runs.append(measure("baseline", scenario.sessions, scenario.burst))
                if previous is not None:
                    row.previous_runs.append(measure("previous", scenario.sessions, scenario.burst, scenario.sse))
            rows.append(row)
            print(f"  {scenario.name}: done", file=sys.stderr, flush=True)
    return rows


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
        f"  {'gw µs/ev':>8}{'base':>6}  {'gw p50/p99 ms':>14}{'base p50/p99 ms':>16}  {'ev/msg':>6}{'lost':>9}  {'cpu gw/client':>13}"
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
            f"  {g.events / max(1, g.messages):>6.1f}{lost:>9}  {g.server_cpu_s / max(g.seconds, 1e-9):>6.0%}/{g.client_cpu_s / max(g.seconds, 1e-9):<6.0%}"
        )
    for row in rows:
        if row.lost != (0, 0) or row.disorder:
            codes = sorted({code for r in row.gateway_runs + row.baseline_runs for code in r.close_codes})
            lines.append(f"{row.scenario.name}: {row.lost[0]}/{row.lost[1]} lost, {row.disorder} out of order; close codes {codes}")
    return "\n".join(lines)


def previous_table(rows: list[Row]) -> str:
    """The gateway beside the same gateway from the `--previous` checkout, from the same turns."""
    w = max(13, *(len(row.scenario.name) + 1 for row in rows))
    head = (
        f"{'scenario':<{w}}{'µs/ev now':>10}{'before':>8}{'ratio':>7}  {'ev/s now':>9}{'before':>8}"
        f"  {'p50/p99 ms now':>15}{'before':>15}  {'ev/msg now':>10}{'before':>7}{'lost':>6}"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        g, p = row.gateway, row.previous
        lines.append(
            f"{row.scenario.name:<{w}}{1e6 / g.per_core:>10.1f}{1e6 / p.per_core:>8.1f}{p.per_core / g.per_core:>7.2f}"
            f"  {_si(g.rate):>9}{_si(p.rate):>8}"
            f"  {g.percentile(0.5) / 1000:>7.2f}/{g.percentile(0.99) / 1000:<7.2f}{p.percentile(0.5) / 1000:>7.2f}/{p.percentile(0.99) / 1000:<7.2f}"
            f"  {g.events / max(1, g.messages):>10.1f}{p.events / max(1, p.messages):>7.1f}{sum(r.lost for r in row.previous_runs):>6}"
        )
    return "\n".join(lines)


STAGE_COLUMNS = (
    ("sdk", "SDK read+parse"), ("session", "session+translate"), ("encode+log", "encode+log"), ("send", "outbox+send"),
    ("loop", "event loop"), ("other", "other"),
)


def stage_table(rows: list[Row], pick: Callable[[Row], load.Result] = lambda row: row.gateway) -> str:
    """The gateway's CPU per delta by stage, from its median run of each scenario (or `pick`'s): the run's
    CPU split by the stage sampler's shares (bench/stages.py)."""
    w = max(17, *(len(row.scenario.name) + 1 for row in rows))
    head = f"{'scenario':<{w}}{'µs/ev':>7}  " + "".join(f"{title:>19}" for _, title in STAGE_COLUMNS) + f"{'samples':>9}"
    lines = [head, "-" * len(head)]
    for row in rows:
        g = pick(row)
        samples = sum(g.stages.get(k, 0.0) for k, _ in STAGE_COLUMNS)
        if not samples or not g.delivered:
            continue
        total = g.server_cpu_s * 1e6 / g.delivered
        cells = "".join(f"{total * g.stages.get(k, 0.0) / samples:>12.1f} ({g.stages.get(k, 0.0) / samples:>3.0%})" for k, _ in STAGE_COLUMNS)
        lines.append(f"{row.scenario.name:<{w}}{total:>7.1f}  {cells}{samples:>9.0f}")
    files: dict[str, float] = {}
    for row in rows:
        for key, count in pick(row).stages.items():
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
    parser.add_argument("--previous", type=Path, help="also run the gateway from this checkout (the code before a change), turn about")
    parser.add_argument("--loop", default="auto", choices=("auto", "asyncio", "uvloop"), help="both servers' event loop, as `serve --event-loop` [auto]")
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
    rows = run_all(with_sse(plan) if args.real else plan, args.repeat or (1 if args.quick else 3), args.loop, args.real, args.previous)
    print(table(rows))
    if args.previous:
        print(f"\nthe gateway now and before ({args.previous}), same turns (ratio: CPU per delta before / now):")
        print(previous_table(rows))
    if args.real:
        print("\nreal path, the gateway's CPU per delta by stage (µs, share of the main thread; sampled, bench/stages.py):")
        print(stage_table(rows))
        if args.previous:
            print(f"before ({args.previous}):")
            print(stage_table(rows, lambda row: row.previous))
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
