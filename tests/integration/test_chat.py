"""Chat through the whole stack: real sockets, real SDK, real CLI, scripted model."""

import json

from gateway.scripted_model.script import expected_texts
from tests.support.client import WsClient
from tests.support.flows import open_session, query


async def test_multi_turn_chat_streams_deltas(alice: WsClient) -> None:
    attached = await open_session(alice)
    assert attached["session"]["state"] in ("starting", "idle")
    ack = await alice.request({"type": "query", "prompt": "SCRIPT:hello"})
    assert ack["type"] == "ack" and ack["result"]["queued"] is False
    result = await alice.event("result")
    assert result["is_error"] is False and result["query_id"] == ack["id"]
    assert alice.text() == expected_texts("hello")[0]
    deltas = [e for e in alice.kinds() if e == "stream"]
    assert len(deltas) > 3
    message = await alice.event("assistant_message")
    assert message["content"][0] == {"type": "text", "text": expected_texts("hello")[0]}

    ack2 = await alice.request({"type": "query", "prompt": "SCRIPT:long"})
    result2 = await alice.event("result", lambda e: e["query_id"] == ack2["id"], timeout=30)
    assert result2["num_turns"] >= 1
    assert alice.text().endswith(expected_texts("long")[0])
    await alice.state("idle")


async def test_no_host_paths_reach_clients(gateway, alice: WsClient) -> None:  # type: ignore[no-untyped-def]
    """The CLI's init message names the session's directories; clients must not see them."""
    await open_session(alice)
    await query(alice, "SCRIPT:hello")
    await alice.event("result")
    root = str(gateway.app.state.settings.sessions_dir.resolve())
    assert any(f["event"]["kind"] == "system" for f in alice.events)
    assert root not in json.dumps(alice.frames)


async def test_queries_during_a_turn_are_queued_and_run_in_order(alice: WsClient) -> None:
    await open_session(alice)
    first = await alice.request({"type": "query", "prompt": "SCRIPT:long"})
    second = await alice.request({"type": "query", "prompt": "SCRIPT:hello"})
    third = await alice.request({"type": "query", "prompt": [{"type": "text", "text": "SCRIPT:hello"}]})
    assert first["result"] == {"query_id": first["id"], "queued": False, "position": 0}
    assert second["result"] == {"query_id": second["id"], "queued": True, "position": 1}  # runs next
    assert third["result"] == {"query_id": third["id"], "queued": True, "position": 2}
    for ack in (first, second, third):
        result = await alice.event("result", timeout=30)
        assert result["query_id"] == ack["id"] and result["is_error"] is False
    starts = [f["event"]["query_id"] for f in alice.events if f["event"]["kind"] == "turn_started"]
    assert starts == [first["id"], second["id"], third["id"]]
    queries = [f["event"] for f in alice.events if f["event"]["kind"] == "user_query"]
    assert [q.get("queued", False) for q in queries] == [False, True, True]
    assert queries[2]["prompt"] == [{"type": "text", "text": "SCRIPT:hello"}]


async def test_a_query_is_acked_after_the_events_it_caused(alice: WsClient) -> None:
    """PROTOCOL.md §3.1: a frame's answer follows the events it caused before it was answered."""
    await open_session(alice)
    ack = await alice.request({"type": "query", "prompt": "SCRIPT:hello"})
    answered_at = next(i for i, f in enumerate(alice.frames) if f["type"] == "ack" and f["id"] == ack["id"])
    before = [f["event"] for f in alice.frames[:answered_at] if f["type"] == "event"]
    assert [e["kind"] for e in before[-3:]] == ["user_query", "state", "turn_started"]
    assert before[-1]["query_id"] == before[-3]["query_id"] == ack["id"] and before[-2]["state"] == "running"
    await alice.event("result")
    closed = await alice.request({"type": "close"})
    assert alice.frames[-2]["event"] == {"kind": "state", "state": "closed", "reason": "closed by client"}
    assert alice.frames[-1] == closed


async def test_turn_cost_and_session_total(alice: WsClient) -> None:
    await open_session(alice)
    results = []
    for _ in range(2):
        ack = await query(alice, "SCRIPT:hello")
        results.append(await alice.event("result", lambda e, qid=ack["id"]: e["query_id"] == qid))
    assert all(r["cost_usd"] > 0 for r in results)
    assert abs(results[1]["total_cost_usd"] - (results[0]["cost_usd"] + results[1]["cost_usd"])) < 1e-9


async def test_client_prompts_are_verbatim(alice: WsClient, model_server) -> None:  # type: ignore[no-untyped-def]
    """A client can't run CLI slash commands or expand @files: the model receives the text as typed."""
    await open_session(alice)
    for prompt in ("/clear", "@/etc/passwd what is this?"):
        ack = await query(alice, prompt)
        result = await alice.event("result", lambda e, qid=ack["id"]: e["query_id"] == qid)
        assert result["num_turns"] >= 1
        sent = json.dumps([r.body for r in model_server.requests])
        assert json.dumps(prompt)[1:-1] in sent
    assert "root:x:0:0" not in json.dumps([r.body for r in model_server.requests])
    assert not any(f["event"]["kind"] == "conversation_reset" for f in alice.events)
