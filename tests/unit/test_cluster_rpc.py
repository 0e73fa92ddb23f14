"""Forwarding between replicas over a real Redis: replies reach the caller, errors keep their code,
and a silent or missing owner gives `owner_unreachable` within the bound, never a hang."""

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from gateway.cluster.rpc import Request, RpcNode
from gateway.store.pubsub import PubSubHub
from gateway.store.redis import connect
from gateway.wire.errors import ErrorCode, GatewayError
from gateway.wire.events import Actor
from tests.support import gateway as gw


async def handler(request: Request) -> bytes:
    if request.op == "close":
        raise GatewayError(ErrorCode.SESSION_CLOSED, "this session is closed")
    if request.op == "snapshot":
        await asyncio.sleep(60)  # an owner that never answers in time
    assert request.actor is not None
    return b'{"echo":%s,"by":"%s"}' % (bytes(request.frame), request.actor.connection.encode())  # type: ignore[union-attr]


@pytest.fixture
async def pair(tmp_path, redis_url) -> AsyncIterator[tuple[RpcNode, RpcNode]]:  # type: ignore[no-untyped-def]
    settings = gw.test_settings(tmp_path, "http://x", redis_url=redis_url, forward_timeout_s=0.5)
    redis = connect(settings)
    hubs = [PubSubHub(redis, settings.redis_timeout_s), PubSubHub(redis, settings.redis_timeout_s)]
    for hub in hubs:
        hub.start()
    nodes = (RpcNode(redis, hubs[0], settings, "r1", handler), RpcNode(redis, hubs[1], settings, "r2", handler))
    for node in nodes:
        await node.start()
    yield nodes
    for node in nodes:
        await node.stop()
    for hub in hubs:
        await hub.stop()
    await redis.aclose()


async def test_a_call_gets_the_owners_reply(pair) -> None:  # type: ignore[no-untyped-def]
    r1, _ = pair
    body = await r1.call("r2", "s1", "execute", frame=b'{"type":"interrupt","id":"f1"}', actor=Actor(principal="alice", connection="c_1"))
    assert body == b'{"echo":{"type":"interrupt","id":"f1"},"by":"c_1"}'


async def test_the_owners_error_keeps_its_code(pair) -> None:  # type: ignore[no-untyped-def]
    r1, _ = pair
    with pytest.raises(GatewayError) as caught:
        await r1.call("r2", "s1", "close", arg="bye")
    assert caught.value.code == ErrorCode.SESSION_CLOSED


async def test_a_silent_owner_is_unreachable_within_the_bound(pair) -> None:  # type: ignore[no-untyped-def]
    r1, _ = pair
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await r1.call("r2", "s1", "snapshot")
    assert caught.value.code == ErrorCode.OWNER_UNREACHABLE
    assert 0.5 <= time.monotonic() - started < 1.5


async def test_a_missing_owner_is_unreachable_at_once(pair) -> None:  # type: ignore[no-untyped-def]
    r1, _ = pair
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await r1.call("gone", "s1", "snapshot")
    assert caught.value.code == ErrorCode.OWNER_UNREACHABLE
    assert time.monotonic() - started < 0.4
