"""Bad input over the WebSocket: every case gets a documented error; the socket and session go on."""

import asyncio
import json
import logging

import msgspec
import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.client import WsClient
from tests.support.flows import open_session, query
from tests.support.gateway import TOKENS, RunningGateway, run_gateway
from tests.support.raw_ws import StalledSocket

CASES = [
    (b"{not json", "bad_json", None),
    (b"\xff\xfe{\"type\": \"ping\"}", "bad_json", None),
    ("", "bad_json", None),
    ("[1, 2]", "bad_frame", None),
    ('"just a string"', "bad_frame", None),
    ('{"id": "x1"}', "bad_frame", "x1"),
    ('{"type": "launch_missiles", "id": "x2"}', "unknown_type", "x2"),
    ('{"type": 7, "id": "x3"}', "unknown_type", "x3"),
    ('{"type": "query", "id": "x4"}', "bad_frame", "x4"),
    ('{"type": "query", "id": "x5", "prompt": 42}', "bad_frame", "x5"),
    ('{"type": "query", "id": "x6", "prompt": ""}', "bad_frame", "x6"),
    ('{"type": "query", "id": "x7", "prompt": "hi", "cwd": "/"}', "bad_frame", "x7"),
    ('{"type": "query", "prompt": "hi"}', "bad_frame", None),
    ('{"type": "query", "id": "", "prompt": "hi"}', "bad_frame", None),
    ('{"type": "query", "id": 12, "prompt": "hi"}', "bad_frame", None),
    ('{"type": "permission_response", "id": "x8", "request_id": "req_nope", "decision": "allow"}', "unknown_request", "x8"),
    ('{"type": "permission_response", "id": "x9", "request_id": "req_nope", "decision": "maybe"}', "bad_frame", "x9"),
    ('{"type": "question_response", "id": "x10", "request_id": "req_nope", "answers": {"q": "a"}}', "unknown_request", "x10"),
    ('{"type": "set_permission_mode", "id": "x11", "mode": "yolo"}', "bad_frame", "x11"),
    ('{"type": "attach", "id": "x12", "session_id": "s_x"}', "already_attached", "x12"),
    ('{"type": "open", "id": "x13"}', "already_attached", "x13"),
    ('{"type": "attach", "id": "x14", "session_id": "s_x", "after": -1}', "bad_frame", "x14"),
    ('{"type": "permission_response", "id": "x15", "request_id": "r", "decision": "allow", "updated_input": {"x": ' + "[" * 1800 + "]" * 1800 + "}}", "bad_json", None),  # too deep
    ('{"type": "query", "id": "x18", "prompt": [{"type": "text", "x": ' + "[" * 1800 + "]" * 1800 + "}]}", "bad_json", None),  # too deep
    ("[" * 1800 + "]" * 1800, "bad_json", None),  # too deep, outside any object
    ('{"type": "query", "id": "x16", "prompt": ' + "[" * 1800 + "]" * 1800 + "}", "bad_json", None),  # too deep, wrong type
    ('{"type": "query", "id": "x17", "prompt": 42, oops}', "bad_json", None),  # broken after a wrong type
    ('{"type": "query", "id": "' + "x" * 129 + '", "prompt": "hi"}', "bad_frame", None),  # an invalid id is not echoed
    ('{"type": "query", "id": "' + "x" * 128 + '", "prompt": 42}', "bad_frame", "x" * 128),
]


async def test_every_bad_frame_gets_its_error_and_the_session_goes_on(alice: WsClient) -> None:
    await open_session(alice)
    for raw, code, frame_id in CASES:
        await alice.send(raw)
        reply = await alice.until(lambda f: f["type"] == "error")
        assert (reply["code"], reply.get("id")) == (code, frame_id), (raw, reply)
        assert reply["message"]
    ack = await query(alice, "SCRIPT:hello")
    result = await alice.event("result", lambda e: e["query_id"] == ack["id"])
    assert result["is_error"] is False


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
MALFORMED_BLOCKS = [
    [{"type": "text"}], [{"type": "text", "text": 5}], [{"type": "text", "text": ""}], [None], [["a"]], ["a"],
    [{"type": "banana", "text": "x"}], [{"text": "x"}], [{"type": "text", "text": "x", "extra": 1}],
    [{"type": "image", "source": {"type": "base64", "media_type": "image/png"}}],
    [{"type": "image", "source": {"type": "base64", "media_type": "application/pdf", "data": PNG}}],
    [{"type": "document", "source": {"type": "text", "data": "x"}}],
]


async def test_malformed_content_blocks_are_refused_and_valid_ones_reach_the_model(alice: WsClient) -> None:
    """Blocks the API would refuse wedged the CLI's turn for good; they are refused up front, naming
    the block, and the shapes that are accepted are ones the CLI takes."""
    await open_session(alice)
    for blocks in MALFORMED_BLOCKS:
        reply = await alice.request({"type": "query", "prompt": [{"type": "text", "text": "fine"}, *blocks]})
        assert reply["type"] == "error" and reply["code"] == "bad_frame", (blocks, reply)
        assert "$.prompt[1]" in reply["message"], reply
    assert "user_query" not in alice.kinds()
    good = [
        {"type": "text", "text": "SCRIPT:hello", "cache_control": {"type": "ephemeral"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "some notes"}, "title": "notes"},
    ]
    ack = await alice.request({"type": "query", "prompt": good})
    assert ack["type"] == "ack", ack
    assert (await alice.event("user_query"))["prompt"] == good
    result = await alice.event("result", lambda e: e["query_id"] == ack["id"], timeout=60)
    assert result["is_error"] is False, result
    assert "Hello! I am the scripted model" in alice.text()


async def test_session_frames_before_attach(gateway: RunningGateway) -> None:
    client = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    for frame in ({"type": "query", "prompt": "hi"}, {"type": "interrupt"}, {"type": "close"}):
        reply = await client.request(frame)
        assert reply["code"] == "not_attached"
    assert (await client.request({"type": "ping"}))["type"] == "pong"
    await client.close()


async def test_an_oversized_frame_echoes_only_a_valid_id(settings, model_url) -> None:  # type: ignore[no-untyped-def]
    small = msgspec.structs.replace(settings, max_frame_bytes=4096)
    async with run_gateway(small) as gw:
        client = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        await open_session(client)
        for frame_id, echoed in (("big-1", "big-1"), ("x" * 129, None), ("", None)):
            await client.send(json.dumps({"type": "query", "id": frame_id, "prompt": "x" * 5000}))
            reply = await client.until(lambda f: f["type"] == "error")
            assert (reply["code"], reply.get("id")) == ("frame_too_large", echoed)


async def test_oversized_frames(settings, model_url) -> None:  # type: ignore[no-untyped-def]
    small = msgspec.structs.replace(settings, max_frame_bytes=4096)
    async with run_gateway(small) as gw:
        client = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        await open_session(client)
        reply = await client.request({"type": "query", "prompt": "x" * 5000})
        assert reply["code"] == "frame_too_large"
        assert (await client.request({"type": "ping"}))["type"] == "pong"
        # Past four times the limit the WebSocket layer itself refuses: close 1009.
        await client.send(json.dumps({"type": "query", "id": "huge", "prompt": "x" * 20000}))
        with pytest.raises(ConnectionClosed):
            await client.recv(timeout=5)
        assert client.close_code == 1009


async def test_an_oversized_message_always_closes_with_1009_and_no_false_alarm(gateway: RunningGateway, caplog: pytest.LogCaptureFixture) -> None:
    """Past four times max_frame_bytes the WebSocket layer refuses a message while the client is still
    sending it, not reading the events streaming to it: the close frame (1009: don't resend) must
    still reach it every time, and the gateway must not log a failure of its own."""
    owner = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    session_id = (await open_session(owner))["session"]["session_id"]
    await query(owner, "SCRIPT:" + json.dumps({"steps": [[{"text": "word ", "repeat": 8_000}]], "chunk": 8, "delay_ms": 1}))
    await owner.event("stream")
    session = await gateway.manager.get("alice", session_id)
    huge = json.dumps({"type": "query", "id": "huge", "prompt": "x" * (gateway.app.state.settings.max_frame_bytes * 4)}).encode()
    codes = []
    for _ in range(12):
        client = await asyncio.to_thread(StalledSocket, gateway.port, TOKENS["alice"])
        after = session.feed.last_seq
        await asyncio.to_thread(client.send, {"type": "attach", "id": "a", "session_id": session_id, "after": after})
        await asyncio.to_thread(client.send_text, huge, 5.0)  # the gateway stops taking it part way
        codes.append(await asyncio.to_thread(client.close_code))
        client.close()
    assert codes == [1009] * 12
    assert session.state == "running" and session.feed.last_seq > after  # events streamed throughout
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    owner.abort()  # it read nothing since: no closing handshake to wait for
    await gateway.manager.close(session, "test over")


async def test_handshake_timeout(settings, model_url) -> None:  # type: ignore[no-untyped-def]
    quick = msgspec.structs.replace(settings, handshake_timeout_s=0.3)
    async with run_gateway(quick) as gw:
        client = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        with pytest.raises(ConnectionClosed):
            await client.recv(timeout=5)
        assert client.close_code == 4002


async def test_garbage_storm_leaves_other_sessions_alone(gateway: RunningGateway) -> None:
    """One client floods junk while another chats; the chat's events stay complete and ordered."""
    calm = await WsClient.connect(gateway.ws_url, TOKENS["bob"])
    await open_session(calm)
    noisy = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    await open_session(noisy)

    async def flood() -> int:
        sent = 0
        junk = [b"\x00\xff", "{", '{"type":"query","id":"j","prompt":{"a":1}}', '{"type":"attach"}', "[]" * 1000, '{"type":"interrupt","id":"i"}']
        for i in range(300):
            await noisy.send(junk[i % len(junk)])
            sent += 1
        return sent

    ack = await query(calm, "SCRIPT:long")
    sent, result = await asyncio.gather(flood(), calm.event("result", lambda e: e["query_id"] == ack["id"], timeout=30))
    assert sent == 300 and result["is_error"] is False
    errors = 0
    while errors < 250:
        frame = await noisy.recv()
        errors += frame["type"] == "error"
    assert (await noisy.request({"type": "ping"}))["type"] == "pong"
    await calm.close()
    await noisy.close()
