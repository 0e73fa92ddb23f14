"""Redis memory of one session: a real CLI (the scripted model answering) holds a conversation of
`--turns` turns through the gateway's session core, then every key the session has in Redis is
weighed with MEMORY USAGE.

    python -m bench.redis_memory                # 100 turns, replies of ~1,000 characters
    python -m bench.redis_memory --turns 20 --reply-chars 200

The event log is weighed as the Stream the design lays out (`P:{sid}:log`, one entry per event,
id `<seq>-0`, fields `f` frame and `t` ms): the session's own frames, written there by this script
while the gateway's log is in memory.
"""

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from redis.asyncio import Redis

from gateway.config import Settings
from gateway.profiles import load_profiles
from gateway.scripted_model.server import ScriptedModelServer
from gateway.sessions.manager import SessionManager
from gateway.sessions.session import Session
from gateway.store.conversations import RedisSessionStore
from gateway.wire import client as cf
from gateway.wire.events import Actor
from tests.support.redis_server import RedisServer


class Results:
    """A feed sink that wakes whoever waits for a query's `result`."""

    def __init__(self) -> None:
        self.done: dict[str, asyncio.Event] = {}

    def push(self, frame: bytes) -> None:
        event = json.loads(frame).get("event", {})
        if event.get("kind") == "result" and event.get("query_id") in self.done:
            self.done[event["query_id"]].set()

    def end(self) -> None:
        pass


def reply_script(chars: int) -> str:
    words = " ".join(f"word{n % 97}" for n in range(chars // 7 + 1))[:chars]
    return "SCRIPT:" + json.dumps({"steps": [[{"text": words}]], "chunk": 8})


async def converse(session: Session, turns: int, reply_chars: int) -> None:
    results = Results()
    session.feed.subscribe(results)
    actor = Actor(principal="bench")
    for n in range(turns):
        query_id = f"q{n}"
        results.done[query_id] = asyncio.Event()
        await session.execute(cf.Query(id=query_id, prompt=f"Turn {n}: please answer at length.\n{reply_script(reply_chars)}"), actor)
        await asyncio.wait_for(results.done[query_id].wait(), 120)
    session.feed.detach(results)


async def weigh(redis: Redis, pattern: str) -> Iterator[tuple[str, str, int, int]]:
    """(key, type, elements, MEMORY USAGE bytes) for every key matching `pattern`."""
    rows = []
    async for raw in redis.scan_iter(match=pattern, count=1000):
        key = raw.decode()
        kind = (await redis.type(key)).decode()
        size = {"list": redis.llen, "set": redis.scard, "zset": redis.zcard, "hash": redis.hlen, "stream": redis.xlen}[kind]
        rows.append((key, kind, await size(key), await redis.memory_usage(key, samples=0) or 0))
    return iter(sorted(rows))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--reply-chars", type=int, default=1000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-redis-memory-"))
    server = RedisServer(tmp / "redis").start()
    model = ScriptedModelServer()
    model.start_in_thread()
    settings = Settings(
        anthropic_api_key="sk-bench", anthropic_base_url=model.url, demo="off", sessions_dir=tmp / "sessions",
        scrub_environment=False, redis_url=server.url, tool_env_isolation="off",
    )
    redis = Redis.from_url(server.url)
    manager = SessionManager(settings, load_profiles(None), conversations=RedisSessionStore(redis, settings.redis_key_prefix, 3600))
    try:
        session = await manager.open("bench", cf.Open(id="o1"))
        started = time.monotonic()
        await converse(session, args.turns, args.reply_chars)
        elapsed = time.monotonic() - started
        log = f"{settings.redis_key_prefix}:{{{session.id}}}:log"
        first = session.feed.log.first_seq
        frames = session.feed.log.read_after(first - 1) or []
        async with redis.pipeline(transaction=False) as pipe:
            for seq, frame in enumerate(frames, start=first):
                pipe.xadd(log, {"f": frame, "t": int(time.time() * 1000)}, id=f"{seq}-0")
            await pipe.execute()
        print(f"{args.turns} turns with replies of ~{args.reply_chars} characters in {elapsed:.1f} s; "
              f"{session.feed.log.last_seq} events, {len(frames)} in the log (log_max_events {settings.log_max_events})")
        print(f"{'key':70} {'type':7} {'elements':>9} {'bytes':>11}")
        total = 0
        for key, kind, count, size in await weigh(redis, f"{settings.redis_key_prefix}:*"):
            total += size
            print(f"{key[:70]:70} {kind:7} {count:9,} {size:11,}")
        log_bytes = await redis.memory_usage(log, samples=0) or 0
        print(f"{'total':70} {'':7} {'':9} {total:11,}")
        print(f"event log: {log_bytes / max(1, len(frames)) * 1000:,.0f} bytes per 1,000 events "
              f"(frames average {sum(map(len, frames)) / max(1, len(frames)):.0f} bytes)")
    finally:
        await manager.shutdown()
        await redis.aclose()
        model.stop()
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
