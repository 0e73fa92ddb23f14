"""Resume without loss: abrupt drops at random points, replay + live tail exactly once, reset + snapshot."""

import asyncio
import json
import random

import msgspec

from tests.support.client import WsClient
from tests.support.flows import attach, open_session, query
from tests.support.gateway import TOKENS, RunningGateway, run_gateway
from tests.support.http import ApiClient
from tests.support.raw_ws import StalledSocket


async def observe(client: WsClient, results: int) -> None:
    """Read until `results` turns finished, allowing every tool request on the way."""
    while client.kinds().count("result") < results:
        frame = await client.recv(timeout=30)
        if frame["type"] == "event" and frame["event"]["kind"] == "permission_request":
            await client.send({"type": "permission_response", "id": "allow-" + frame["event"]["request_id"],
                               "request_id": frame["event"]["request_id"], "decision": "allow"})


def bodies(client: WsClient) -> list[tuple[int, dict]]:
    return [(f["seq"], {k: v for k, v in f["event"].items() if k != "_seen"}) for f in client.events]


async def test_random_abrupt_drops_deliver_every_event_exactly_once(gateway: RunningGateway) -> None:
    rng = random.Random(20261121)
    observer = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    attached = await open_session(observer)
    session_id = attached["session"]["session_id"]
    await query(observer, "SCRIPT:long")
    await query(observer, "SCRIPT:bash")
    watching = asyncio.create_task(observe(observer, results=2))

    # The flaky tab reconnects over and over, each time reading a random number of frames
    # (sometimes none) and then cutting the TCP connection without a close frame.
    flaky = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    await attach(flaky, session_id)
    drops = 0
    while flaky.kinds().count("result") < 2:
        for _ in range(rng.randint(0, 8)):
            try:
                await flaky.recv(timeout=2)
            except TimeoutError:
                break
        flaky.abort()
        drops += 1
        if rng.random() < 0.3:
            await asyncio.sleep(rng.random() * 0.2)
        previous = flaky
        flaky = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
        flaky.resume_from(previous)
        flaky.events = previous.events
        reply = await attach(flaky, session_id, after=previous.last_seq, epoch=previous.epoch)
        assert reply["type"] == "attached", reply
    await watching
    await flaky.close()
    assert drops >= 20
    # WsClient asserts contiguity and no duplicates on arrival; both tabs saw the same events.
    assert bodies(flaky) == bodies(observer)[: len(flaky.events)]
    assert [seq for seq, _ in bodies(flaky)] == list(range(1, len(flaky.events) + 1))
    await observer.close()


async def test_replay_after_cursor_then_live_tail(gateway: RunningGateway, alice: WsClient) -> None:
    attached = await open_session(alice)
    await query(alice, "SCRIPT:hello")
    await alice.event("result")
    middle = alice.events[len(alice.events) // 2]["seq"]
    late = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    late.last_seq, late.epoch = middle, alice.epoch
    reply = await attach(late, attached["session"]["session_id"], after=middle, epoch=alice.epoch)
    assert reply["type"] == "attached" and reply["after"] == middle
    while late.last_seq < alice.last_seq:
        await late.recv()
    assert [f["seq"] for f in late.events] == list(range(middle + 1, alice.last_seq + 1))
    second = await query(alice, "SCRIPT:hello")
    await late.event("result", lambda e: e["query_id"] == second["id"])
    await alice.event("result", lambda e: e["query_id"] == second["id"])
    while late.last_seq < alice.last_seq:
        await late.recv()
    assert bodies(late) == bodies(alice)[middle:]
    await late.close()


async def test_too_old_cursor_gets_reset_with_snapshot(settings, model_url) -> None:  # type: ignore[no-untyped-def]
    small = msgspec.structs.replace(settings, log_max_events=20)
    async with run_gateway(small) as gw:
        alice = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        attached = await open_session(alice)
        await query(alice, "SCRIPT:hello")
        await alice.event("result")
        await alice.state("idle")
        assert alice.last_seq > 20
        late = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        reply = await attach(late, attached["session"]["session_id"], after=1, epoch=alice.epoch)
        assert reply["type"] == "reset" and reply["reason"] == "cursor_too_old"
        snapshot = reply["snapshot"]
        assert snapshot["session"]["last_seq"] == alice.last_seq
        kinds = [e["kind"] for e in snapshot["transcript"]]
        assert kinds == ["user_query", "assistant_message", "result"]
        assert snapshot["session"]["state"] == "idle" and snapshot["session"]["turns"] == 1
        # After the snapshot the live tail continues from its last_seq.
        await query(alice, "SCRIPT:hello")
        await late.event("result")
        assert late.events[0]["seq"] == snapshot["session"]["last_seq"] + 1
        await late.close()
        await alice.close()


async def test_clients_are_told_the_limits_they_resume_within(settings, model_url) -> None:  # type: ignore[no-untyped-def]
    """`session.limits` states the log's retention (and the queue and frame bounds) as configured,
    on `attached`, in a reset's snapshot and over HTTP; and the log really keeps that many."""
    tight = msgspec.structs.replace(settings, log_max_events=20, log_max_bytes=1 << 20, log_max_age_s=600.0,
                                    max_queued_queries=3, max_frame_bytes=65536)
    expected = {"log_max_events": 20, "log_max_bytes": 1 << 20, "log_max_age_s": 600.0, "transcript_max_events": 2000,
                "max_queued_queries": 3, "max_frame_bytes": 65536}
    async with run_gateway(tight) as gw:
        alice = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        attached = await open_session(alice)
        assert attached["session"]["limits"] == expected
        await query(alice, "SCRIPT:hello")
        await alice.event("result")
        await alice.state("idle")
        assert alice.last_seq > expected["log_max_events"]
        late = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        oldest_kept = alice.last_seq - expected["log_max_events"] + 1  # at most log_max_events are kept
        reset = await attach(late, attached["session"]["session_id"], after=oldest_kept - 2, epoch=alice.epoch)
        assert reset["type"] == "reset" and reset["snapshot"]["session"]["limits"] == expected
        api = ApiClient(gw.http_url)
        status = await api.http.get(f"/v1/sessions/{attached['session']['session_id']}")
        assert status.json()["session"]["limits"] == expected
        await api.http.aclose()
        await late.close()
        await alice.close()


async def test_other_epoch_gets_reset(gateway: RunningGateway, alice: WsClient) -> None:
    attached = await open_session(alice)
    other = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    reply = await attach(other, attached["session"]["session_id"], after=3, epoch="deadbeef")
    assert reply["type"] == "reset" and reply["reason"] == "epoch_mismatch"
    assert reply["snapshot"]["session"]["epoch"] == alice.epoch
    await other.close()


async def test_cursor_ahead_of_log_gets_reset(gateway: RunningGateway, alice: WsClient) -> None:
    attached = await open_session(alice)
    other = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    reply = await attach(other, attached["session"]["session_id"], after=10_000, epoch=alice.epoch)
    assert reply["type"] == "reset" and reply["reason"] == "cursor_ahead"
    assert reply["snapshot"]["session"]["last_seq"] == alice.last_seq
    # Without an epoch too: a cursor from nowhere is ahead, not too old.
    again = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    assert (await attach(again, attached["session"]["session_id"], after=alice.last_seq + 1))["reason"] == "cursor_ahead"
    await again.close()
    await other.close()


async def test_resent_frame_id_is_not_executed_twice(gateway: RunningGateway, alice: WsClient) -> None:
    attached = await open_session(alice)
    first = await alice.request({"type": "query", "id": "q-once", "prompt": "SCRIPT:hello"})
    alice.abort()
    back = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    back.resume_from(alice)
    await attach(back, attached["session"]["session_id"], after=alice.last_seq, epoch=alice.epoch)
    again = await back.request({"type": "query", "id": "q-once", "prompt": "SCRIPT:hello"})
    assert again["type"] == "ack" and again["duplicate"] is True and again["result"] == first["result"]
    await back.event("result")
    await back.state("idle")
    session = await gateway.manager.get("alice", attached["session"]["session_id"])
    assert session.turns == 1
    await back.close()


async def test_resent_open_returns_the_same_session(gateway: RunningGateway) -> None:
    one = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    first = await one.request({"type": "open", "id": "open-once"}, timeout=60)
    one.abort()
    two = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    second = await two.request({"type": "open", "id": "open-once"}, timeout=60)
    assert second["session"]["session_id"] == first["session"]["session_id"]
    assert gateway.manager.live_count("alice") == 1
    await two.close()


async def test_stalled_reader_is_dropped_with_4008_and_resumes_without_loss(settings, model_url) -> None:  # type: ignore[no-untyped-def]
    """A client that stops reading must not grow the gateway's memory: bounded queue, 4008, resume."""
    burst = "SCRIPT:" + json.dumps({"steps": [[{"text": "y", "repeat": 700_000}]], "chunk": 7000})
    bounded = msgspec.structs.replace(settings, send_queue_bytes=2 * 1024 * 1024)
    async with run_gateway(bounded) as gw:
        reader = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        attached = await open_session(reader)
        session_id = attached["session"]["session_id"]
        # Blocking socket calls go to a thread: the gateway runs in this event loop.
        stalled = await asyncio.to_thread(StalledSocket, gw.port, TOKENS["alice"])
        await asyncio.to_thread(stalled.send, {"type": "attach", "id": "a1", "session_id": session_id, "after": reader.last_seq})
        acks = [await query(reader, burst) for _ in range(12)]
        for ack in acks:
            await reader.event("result", lambda e, qid=ack["id"]: e["query_id"] == qid, timeout=60)
        session = await gw.manager.get("alice", session_id)
        assert session.feed.sink_count == 1  # the stalled socket was dropped and detached
        assert await asyncio.to_thread(stalled.close_code) == 4008
        stalled.close()
        # It comes back from its cursor (here: where it attached) and gets every event exactly once.
        back = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        back.last_seq, back.epoch = 6, reader.epoch
        reply = await attach(back, session_id, after=6, epoch=reader.epoch)
        assert reply["type"] == "attached"
        while back.last_seq < reader.last_seq:
            await back.recv()
        assert bodies(back) == bodies(reader)[6:]
        await back.close()
        await reader.close()


async def test_a_reader_cut_for_lagging_at_default_settings_resumes_with_a_replay(settings, model_url) -> None:  # type: ignore[no-untyped-def]
    """At the default bounds a stream of small events must not let a stalled reader fall out of the
    log before it is cut (8 MiB of ~190-byte events is four times the log's 10,000): cut with 4008,
    it comes back from the last event it read and gets a replay, not a reset."""
    burst = "SCRIPT:" + json.dumps({"steps": [[{"text": "y", "repeat": 8 * 70_000}]], "chunk": 8})
    async with run_gateway(settings) as gw:
        reader = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        session = await gw.manager.get("alice", (await open_session(reader))["session"]["session_id"])
        stalled = await asyncio.to_thread(StalledSocket, gw.port, TOKENS["alice"])
        await asyncio.to_thread(stalled.send, {"type": "attach", "id": "a1", "session_id": session.id, "after": reader.last_seq})
        async with asyncio.timeout(10):
            while session.feed.sink_count < 2:
                await asyncio.sleep(0.01)
        ack = await query(reader, burst)
        finished = asyncio.create_task(reader.event("result", lambda e: e["query_id"] == ack["id"], timeout=180))
        async with asyncio.timeout(180):
            while session.feed.sink_count > 1 and not finished.done():
                await asyncio.sleep(0.01)
        messages, code = await asyncio.to_thread(stalled.read_until_close)
        stalled.close()
        assert code == 4008
        seen = [f["seq"] for m in messages for f in map(json.loads, m.split("\n")) if f["type"] == "event"]
        back = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        back.last_seq, back.epoch = seen[-1], reader.epoch
        reply = await attach(back, session.id, after=seen[-1], epoch=reader.epoch)
        assert reply["type"] == "attached", (reply["type"], reply.get("reason"), seen[-1])
        await finished
        while back.last_seq < reader.last_seq:
            await back.recv()
        assert bodies(back) == [b for b in bodies(reader) if b[0] > seen[-1]]
        await back.close()
        await reader.close()


async def test_a_reader_that_answers_no_ping_is_told_to_resume(settings, model_url) -> None:  # type: ignore[no-untyped-def]
    """A reader stalled past the ping interval and timeout gets 4010 (resume), not 1011 ("internal
    error"), behind everything it had not read; the gateway drops its outbox as for any departure."""
    quick = msgspec.structs.replace(settings, ws_ping_interval_s=0.5, ws_ping_timeout_s=1.0)
    async with run_gateway(quick) as gw:
        reader = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        attached = await open_session(reader)
        session = await gw.manager.get("alice", attached["session"]["session_id"])
        stalled = await asyncio.to_thread(StalledSocket, gw.port, TOKENS["alice"])
        await asyncio.to_thread(stalled.send, {"type": "attach", "id": "a1", "session_id": session.id, "after": reader.last_seq})
        await query(reader, "SCRIPT:long")
        await reader.event("result", timeout=60)  # the reader answers pings; the stalled one has a backlog
        assert await asyncio.to_thread(stalled.close_code) == 4010
        stalled.close()
        assert session.feed.sink_count == 1
        await reader.close()


async def test_same_frame_id_from_two_sockets_at_once_runs_once(gateway: RunningGateway, alice: WsClient) -> None:
    attached = await open_session(alice)
    tab2 = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    await attach(tab2, attached["session"]["session_id"])
    frame = {"type": "set_model", "id": "same-id", "model": "claude-haiku-4-5"}
    await asyncio.gather(alice.send(frame), tab2.send(frame))
    replies = [await c.until(lambda f: f.get("id") == "same-id") for c in (alice, tab2)]
    assert sorted(r.get("duplicate", False) for r in replies) == [False, True]
    await alice.request({"type": "ping"})
    await asyncio.sleep(0.2)
    while True:
        try:
            await alice.recv(timeout=0.3)
        except TimeoutError:
            break
    assert alice.kinds().count("model_changed") == 1
    await tab2.close()
