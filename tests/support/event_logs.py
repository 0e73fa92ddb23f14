"""Helpers for event-log tests against a real Redis: a recording sink, an owner's log, waiting, counting commands."""

import asyncio
import json
import secrets
from typing import Any

from redis.asyncio import Redis

from gateway.cluster.keys import SessionKeys
from gateway.config import Settings
from gateway.events.redis_log import RedisEventLog


class Recorder:
    """A sink that keeps what it is given."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.ended = False

    def push(self, frame: bytes) -> None:
        self.frames.append(frame)

    def end(self) -> None:
        self.ended = True

    def seqs(self) -> list[int]:
        return [json.loads(f)["seq"] for f in self.frames]


def new_keys() -> SessionKeys:
    return SessionKeys.of("ag", "s_" + secrets.token_hex(6))


async def claimed_log(redis: Redis, keys: SessionKeys | None = None, fenced: list[int] | None = None, **bounds: Any) -> RedisEventLog:
    """A log for a fresh session, claimed as the cluster's claim does (the fence bumped in meta)."""
    keys = keys or new_keys()
    token = await redis.hincrby(keys.meta, "fence", 1)
    settings = Settings(**bounds)
    return await RedisEventLog.create(redis, keys, settings, fence=token, on_fenced=lambda: (fenced if fenced is not None else []).append(token))


async def wait_for(condition: Any, timeout: float = 10.0) -> None:
    """Wait for `condition()` (loop turns, then short sleeps), bounded."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.002)


async def command_calls(redis: Redis, command: str) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))
