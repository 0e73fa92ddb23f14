"""Redis memory of one session: a real CLI (the scripted model answering) holds a conversation of
`--turns` turns through a real gateway (WebSocket, Redis configured), then every key the session
has in Redis is weighed with MEMORY USAGE.

    python -m bench.redis_memory                # 100 turns, replies of ~1,000 characters
    python -m bench.redis_memory --turns 20 --reply-chars 200

The event log is the Stream `P:{sid}:log` (one entry per event, id `<seq>-0`, fields `f` frame and
`t` ms). A gateway that keeps its log in memory has none: then this script writes the newest
`log_max_events` frames its client received there, as the Redis log lays them out, and says so.
"""

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import msgspec
from redis.asyncio import Redis

from gateway.scripted_model.server import ScriptedModelServer
from tests.support.client import WsClient
from tests.support.flows import open_session, query
from tests.support.gateway import TOKENS, run_gateway, test_settings
from tests.support.redis_server import RedisServer


def reply_script(chars: int) -> str:
    words = " ".join(f"word{n % 97}" for n in range(chars // 7 + 1))[:chars]
    return "SCRIPT:" + json.dumps({"steps": [[{"text": words}]], "chunk": 8})


async def weigh(redis: Redis, pattern: str) -> list[tuple[str, str, int, int]]:
    """(key, type, elements, MEMORY USAGE bytes) for every key matching `pattern`."""
    rows = []
    async for raw in redis.scan_iter(match=pattern, count=1000):
        key = raw.decode()
        kind = (await redis.type(key)).decode()
        size = {"list": redis.llen, "set": redis.scard, "zset": redis.zcard, "hash": redis.hlen, "stream": redis.xlen, "string": redis.strlen}[kind]
        rows.append((key, kind, await size(key), await redis.memory_usage(key, samples=0) or 0))
    return sorted(rows)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--reply-chars", type=int, default=1000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-redis-memory-"))
    server = RedisServer(tmp / "redis").start()
    model = ScriptedModelServer()
    model.start_in_thread()
    settings = test_settings(tmp, model.url, redis_url=server.url, tool_env_isolation="off")
    redis = Redis.from_url(server.url)
    try:
        async with run_gateway(settings) as gw:
            client = await WsClient.connect(gw.ws_url, TOKENS["alice"])
            session_id = (await open_session(client))["session"]["session_id"]
            started = time.monotonic()
            for n in range(args.turns):
                ack = await query(client, f"Turn {n}: please answer at length.\n{reply_script(args.reply_chars)}")
                await client.event("result", lambda e: e["query_id"] == ack["id"], timeout=120)
            elapsed = time.monotonic() - started
            log = f"{settings.redis_key_prefix}:{{{session_id}}}:log"
            written_here = not await redis.exists(log)
            if written_here:
                kept = client.events[-settings.log_max_events:]
                async with redis.pipeline(transaction=False) as pipe:
                    for frame in kept:
                        body = msgspec.json.encode({k: v for k, v in frame.items() if k != "_seen"})
                        pipe.xadd(log, {"f": body, "t": frame["ts"]}, id=f"{frame['seq']}-0")
                    await pipe.execute()
            entries = await redis.xlen(log)
            frame_bytes = sum(len(f) for _, fields in await redis.xrange(log) for k, f in fields.items() if k == b"f")
            print(f"{args.turns} turns with replies of ~{args.reply_chars} characters in {elapsed:.1f} s; "
                  f"{client.last_seq} events, {entries} in the log (log_max_events {settings.log_max_events})"
                  + ("; the log written by this script (this gateway keeps it in memory)" if written_here else ""))
            print(f"{'key':70} {'type':7} {'elements':>9} {'bytes':>11}")
            total = 0
            for key, kind, count, size in await weigh(redis, f"{settings.redis_key_prefix}:*"):
                total += size
                print(f"{key[:70]:70} {kind:7} {count:9,} {size:11,}")
            log_bytes = await redis.memory_usage(log, samples=0) or 0
            print(f"{'total':70} {'':7} {'':9} {total:11,}")
            print(f"event log: {log_bytes / max(1, entries) * 1000:,.0f} bytes per 1,000 events "
                  f"(frames average {frame_bytes / max(1, entries):.0f} bytes)")
            await client.close()
    finally:
        await redis.aclose()
        model.stop()
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
