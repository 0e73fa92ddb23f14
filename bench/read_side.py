"""The SDK transport's read side alone: CPU per stdout line, the SDK's own transport against the gateway's.

`python -m bench.read_side [--lines N] [--only sdk|chunked]` writes N `stream_event` lines like the
stand-in CLI's text deltas to a file, then for each transport spawns a "CLI" that `cat`s it (through
the transport's real `connect`, so the same pipe and process) and iterates `read_messages()` to the
end, in the same process, best of 5 by CPU time. `--only` runs one transport once, so an instruction
count per line comes from two runs under `valgrind --tool=callgrind` (N lines minus 0 lines).
"""

import argparse
import asyncio
import json
import os
import stat
import tempfile
import time
import uuid
from pathlib import Path

from claude_agent_sdk import ClaudeAgentOptions
from claude_agent_sdk._internal.transport.subprocess_cli import SubprocessCLITransport

from gateway.sessions.transport import chunked_transport

TRANSPORTS = {"sdk": lambda options: SubprocessCLITransport("", options), "chunked": chunked_transport}


def write_lines(directory: Path, lines: int) -> Path:
    """A file of `lines` text-delta stream events and a CLI executable that prints it."""
    session = str(uuid.uuid4())
    data = directory / "stdout.jsonl"
    with data.open("w") as f:
        for n in range(lines):
            event = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f" token {n} @{time.monotonic_ns()}"}}
            line = {"type": "stream_event", "uuid": str(uuid.uuid4()), "session_id": session, "event": event, "parent_tool_use_id": None}
            f.write(json.dumps(line, separators=(",", ":")) + "\n")
    cli = directory / "cli"
    cli.write_text(f"#!/bin/sh\nexec cat {data}\n")
    cli.chmod(cli.stat().st_mode | stat.S_IXUSR)
    return cli


async def read_all(kind: str, cli: Path) -> tuple[int, float]:
    """Lines read and CPU seconds spent reading them (after the spawn)."""
    transport = TRANSPORTS[kind](ClaudeAgentOptions(cli_path=str(cli), cwd=str(cli.parent)))
    await transport.connect()
    try:
        started = time.process_time()
        count = 0
        async for _ in transport.read_messages():
            count += 1
        return count, time.process_time() - started
    finally:
        await transport.close()


async def main(lines: int, only: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cli = write_lines(Path(tmp), lines)
        if only:
            count, cpu = await read_all(only, cli)
            print(f"{only}: {count} lines, {cpu * 1e6 / max(count, 1):.2f} µs CPU/line")
            return
        best = {kind: float("inf") for kind in TRANSPORTS}
        for _ in range(5):
            for kind in TRANSPORTS:
                count, cpu = await read_all(kind, cli)
                assert count == lines, (kind, count)
                best[kind] = min(best[kind], cpu / lines)
        print(
            f"read side, {lines:,} lines written at once, best of 5 (CPU per line): SDK transport {best['sdk'] * 1e6:.2f} µs,"
            f" gateway's {best['chunked'] * 1e6:.2f} µs ({best['sdk'] / best['chunked']:.1f}x); pid {os.getpid()}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.read_side", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--only", choices=tuple(TRANSPORTS))
    args = parser.parse_args()
    import uvloop

    uvloop.run(main(args.lines, args.only))
