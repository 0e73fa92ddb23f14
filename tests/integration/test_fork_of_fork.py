"""A fork can be forked again, before any query its transcript shows: its own ones and those it
was forked with. The chat page's "edit and resend" then "regenerate" does exactly that."""

import json
from typing import Any

from tests.integration.test_sdk_surface import sent_prompts
from tests.support.client import WsClient
from tests.support.flows import open_session, query
from tests.support.gateway import TOKENS


def script(text: str) -> str:
    return "SCRIPT:" + json.dumps({"steps": [[{"text": text}]]})


async def attach_and_ask(gateway: Any, session_id: str, prompt: str) -> tuple[WsClient, list[str], str]:
    """Attach to a fork, send `prompt` there; the query ids its transcript started with, and the sent query's id."""
    tab = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    assert (await tab.request({"type": "attach", "session_id": session_id}))["type"] == "attached"
    await tab.state("idle", timeout=60)
    seen = [f["event"]["query_id"] for f in tab.events if f["event"]["kind"] == "user_query"]
    sent = await query(tab, prompt)
    result = await tab.event("result", lambda e: e["query_id"] == sent["id"], timeout=60)
    assert result["subtype"] == "success", result
    return tab, seen, sent["id"]


async def test_a_fork_forks_again_before_its_own_and_its_inherited_queries(gateway, alice: WsClient, model_server) -> None:  # type: ignore[no-untyped-def]
    model_server.requests.clear()
    await open_session(alice)
    first = await query(alice, script("one"))
    await alice.event("result", lambda e: e["query_id"] == first["id"])
    second = await query(alice, script("two"))
    await alice.event("result", lambda e: e["query_id"] == second["id"])
    edited = (await alice.request({"type": "fork", "query_id": second["id"]}))["result"]["session_id"]
    tab, seen, three = await attach_and_ask(gateway, edited, script("three"))
    assert seen == [first["id"]]

    # Before its own query: the history it was forked with stays (not a fresh conversation).
    again = await tab.request({"type": "fork", "query_id": three})
    assert again["type"] == "ack", again
    regenerated, seen, _ = await attach_and_ask(gateway, again["result"]["session_id"], script("three-again"))
    assert seen == [first["id"]]
    assert [p for p in sent_prompts(model_server, "three-again") if "three-again" not in p] == [script("one")]
    await regenerated.close()

    # Before a query it inherited.
    inherited = await tab.request({"type": "fork", "query_id": first["id"]})
    assert inherited["type"] == "ack", inherited
    fresh, seen, _ = await attach_and_ask(gateway, inherited["result"]["session_id"], script("instead-of-one"))
    assert seen == []
    assert [p for p in sent_prompts(model_server, "instead-of-one") if "instead-of-one" not in p] == []
    await fresh.close()
    await tab.close()
