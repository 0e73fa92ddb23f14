"""Interrupt mid-stream, mid-tool and while an approval is pending; the session stays usable."""

import asyncio

from gateway.scripted_model.script import expected_texts
from tests.support.client import WsClient
from tests.support.flows import open_session, query, tool_results
from tests.support.processes import descendant_running


async def assert_still_usable(client: WsClient) -> None:
    ack = await query(client, "SCRIPT:hello")
    result = await client.event("result", lambda e: e["query_id"] == ack["id"])
    assert result["is_error"] is False
    assert client.text().endswith(expected_texts("hello")[0])


async def test_interrupt_mid_stream(alice: WsClient) -> None:
    await open_session(alice)
    await query(alice, "SCRIPT:long")
    await alice.event("stream", lambda e: e["event"].get("delta", {}).get("type") == "text_delta")
    ack = await alice.request({"type": "interrupt"})
    assert ack["result"] == {"interrupted": True}
    await alice.state("interrupted")
    result = await alice.event("result")
    assert result["is_error"] and result["terminal_reason"] == "aborted_streaming"
    assert len(alice.text()) < len(expected_texts("long")[0])
    await assert_still_usable(alice)


async def test_interrupt_mid_tool(alice: WsClient) -> None:
    await open_session(alice)
    await query(alice, "SCRIPT:slowbash")
    # `sleep 5; echo done` is read-only to the CLI: it runs without asking.
    await alice.event("assistant_message", lambda e: any(b["type"] == "tool_use" for b in e["content"]))
    async with asyncio.timeout(10):
        while not descendant_running("sleep 5"):  # the tool's command runs (in the CLI's sandbox)
            await asyncio.sleep(0.05)
    await alice.request({"type": "interrupt"})
    result = await alice.event("result", timeout=10)
    assert result["is_error"] and result["terminal_reason"] == "aborted_tools"
    assert result["duration_ms"] < 5000  # the 5 s sleep was killed
    await assert_still_usable(alice)


async def test_interrupt_while_approval_pending(alice: WsClient) -> None:
    await open_session(alice)
    await query(alice, "SCRIPT:bash")
    request = await alice.event("permission_request")
    await alice.request({"type": "interrupt"})
    resolved = await alice.event("request_resolved")
    assert resolved == {"kind": "request_resolved", "request_id": request["request_id"], "outcome": "cancelled"}
    result = await alice.event("result")
    assert result["is_error"]
    late = await alice.request({"type": "permission_response", "request_id": request["request_id"], "decision": "allow"})
    assert late["code"] == "request_already_resolved"
    assert not any("hello-from-agent" in str(b.get("content")) and not b.get("is_error") for b in tool_results(alice))
    await assert_still_usable(alice)


async def test_interrupt_when_idle_is_a_no_op(alice: WsClient) -> None:
    await open_session(alice)
    ack = await alice.request({"type": "interrupt"})
    assert ack["result"] == {"interrupted": False}
    await assert_still_usable(alice)
