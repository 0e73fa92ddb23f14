"""Common conversation steps for integration tests."""

from typing import Any

from tests.support.client import WsClient


async def open_session(client: WsClient, **options: Any) -> dict[str, Any]:
    reply = await client.request({"type": "open", **options}, timeout=60)
    assert reply["type"] == "attached", reply
    await client.state("idle", timeout=60)
    return reply


async def attach(client: WsClient, session_id: str, after: int = 0, epoch: str | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "attach", "session_id": session_id, "after": after}
    if epoch is not None:
        frame["epoch"] = epoch
    return await client.request(frame)


async def query(client: WsClient, prompt: str) -> dict[str, Any]:
    ack = await client.request({"type": "query", "prompt": prompt})
    assert ack["type"] == "ack", ack
    return ack


def tool_results(client: WsClient) -> list[dict[str, Any]]:
    out = []
    for f in client.events:
        e = f["event"]
        if e["kind"] == "user_message" and isinstance(e["content"], list):
            out += [b for b in e["content"] if b.get("type") == "tool_result"]
    return out


def result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, list):
        return "".join(c.get("text", "") for c in content)
    return str(content or "")
