"""Authentication, principals and profile narrowing over the WebSocket."""

import asyncio

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.client import WsClient
from tests.support.flows import attach, open_session
from tests.support.gateway import TOKENS, RunningGateway
from tests.support.http import ApiClient


async def closed_with(client: WsClient) -> int | None:
    with pytest.raises(ConnectionClosed):
        await client.recv(timeout=5)
    return client.close_code


@pytest.mark.parametrize("protocols", [["agent-gateway.v1"], ["agent-gateway.v1", "bearer.wrong-token-0000000000"], ["agent-gateway.v1", "bearer."]])
async def test_missing_or_wrong_credentials_close_with_4001(gateway: RunningGateway, protocols: list[str]) -> None:
    client = await WsClient.connect(gateway.ws_url, subprotocols=protocols)
    assert await closed_with(client) == 4001


async def test_bearer_header_for_services(gateway: RunningGateway) -> None:
    client = await WsClient.connect(gateway.ws_url, subprotocols=[], headers={"Authorization": f"Bearer {TOKENS['bob']}"})
    pong = await client.request({"type": "ping"})
    assert pong["type"] == "pong"
    await client.close()


async def test_subprotocol_is_echoed_for_browsers(gateway: RunningGateway) -> None:
    client = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    assert client.ws.subprotocol == "agent-gateway.v1"
    await client.close()


async def test_ticket_from_http_call_authenticates_websocket(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.http_url) as http:
        refused = await http.post("/v1/tickets")
        assert refused.status_code == 401
        issued = await http.post("/v1/tickets", headers={"Authorization": f"Bearer {TOKENS['bob']}"})
        ticket = issued.json()["ticket"]
        renewed = await http.post("/v1/tickets", params={"ticket": ticket})  # a leaked ticket can't be renewed forever
        assert renewed.status_code == 401
    client = await WsClient.connect(f"{gateway.ws_url}?ticket={ticket}", subprotocols=["agent-gateway.v1"])
    attached = await open_session(client)
    assert (await gateway.manager.get("bob", attached["session"]["session_id"])).principal == "bob"
    await client.close()
    forged = ticket[:-4] + ("AAAA" if not ticket.endswith("AAAA") else "BBBB")
    bad = await WsClient.connect(f"{gateway.ws_url}?ticket={forged}", subprotocols=["agent-gateway.v1"])
    assert await closed_with(bad) == 4001


async def test_other_principals_session_looks_missing(gateway: RunningGateway, alice: WsClient) -> None:
    attached = await open_session(alice)
    bob = await WsClient.connect(gateway.ws_url, TOKENS["bob"])
    theirs = await attach(bob, attached["session"]["session_id"])
    missing = await attach(bob, "s_does-not-exist")
    assert theirs["type"] == missing["type"] == "error"
    assert theirs["code"] == missing["code"] == "session_not_found"
    assert theirs["message"].replace(attached["session"]["session_id"], "X") == missing["message"].replace("s_does-not-exist", "X")
    await bob.close()


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"profile": "nope"}, "profile_not_found"),
        ({"model": "gpt-5"}, "model_not_allowed"),
        ({"permission_mode": "bypassPermissions"}, "mode_not_allowed"),
        ({"allowed_tools": ["Bash"]}, "forbidden_option"),
        ({"max_turns": 500}, "forbidden_option"),
        ({"cwd": "/etc"}, "bad_frame"),
        ({"env": {"X": "1"}}, "bad_frame"),
        ({"mcp_servers": {}}, "bad_frame"),
        ({"cli_path": "/bin/sh"}, "bad_frame"),
        ({"extra_args": {}}, "bad_frame"),
        ({"hooks": {}}, "bad_frame"),
        ({"setting_sources": ["user"]}, "bad_frame"),
    ],
)
async def test_refused_escalations(alice: WsClient, options: dict, code: str) -> None:  # type: ignore[type-arg]
    reply = await alice.request({"type": "open", **options})
    assert reply["type"] == "error" and reply["code"] == code, reply
    assert (await alice.request({"type": "ping"}))["type"] == "pong"


async def test_narrowing_is_applied(gateway: RunningGateway, alice: WsClient) -> None:
    attached = await open_session(alice, model="claude-haiku-4-5", allowed_tools=["Read"], disallowed_tools=["Write"], max_turns=3, permission_mode="plan")
    session = await gateway.manager.get("alice", attached["session"]["session_id"])
    assert session.spec.allowed_tools == ["Read"]
    assert "Write" in session.spec.disallowed_tools and session.spec.max_turns == 3
    assert attached["session"]["permission_mode"] == "plan" and attached["session"]["model"] == "claude-haiku-4-5"


async def test_whole_numbers_written_as_floats_are_integers(gateway: RunningGateway, alice: WsClient) -> None:
    """JSON Schema counts 3.0 as an integer, so every integer field takes it; 3.5 and "3" stay refused."""
    for wrong in (3.5, "3"):
        reply = await alice.request({"type": "open", "max_turns": wrong})
        assert reply["type"] == "error" and reply["code"] == "bad_frame", reply
    attached = await open_session(alice, max_turns=3.0)
    session = await gateway.manager.get("alice", attached["session"]["session_id"])
    assert session.spec.max_turns == 3 and type(session.spec.max_turns) is int
    tab2 = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    tab2.last_seq, tab2.epoch = 1, alice.epoch
    reply = await tab2.request({"type": "attach", "session_id": session.id, "after": 1e0})
    assert reply["type"] == "attached" and reply["after"] == 1, reply
    await tab2.close()


async def test_session_limit_per_principal(gateway: RunningGateway) -> None:
    gateway.app.state.settings.max_sessions_per_principal = 1
    one = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    await open_session(one)
    two = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    refused = await two.request({"type": "open"})
    assert refused["code"] == "too_many_sessions"
    bob = await WsClient.connect(gateway.ws_url, TOKENS["bob"])
    await open_session(bob)
    for c in (one, two, bob):
        await c.close()


async def test_connections_per_principal_count_attached_sockets_and_sse_streams_together(gateway: RunningGateway) -> None:
    """At the limit `open`/`attach` get `too_many_connections` (the socket stays up) and an SSE
    request 429; the principal's other connections, and other principals, go on; one that ends
    gives its place back."""
    gateway.app.state.settings.max_connections_per_principal = 2
    one = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    session_id = (await open_session(one))["session"]["session_id"]
    api = ApiClient(gateway.http_url)
    api.session_id = session_id
    async with api.stream():  # the second
        two = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
        refused = await two.request({"type": "attach", "session_id": session_id, "after": 0})
        assert refused["type"] == "error" and refused["code"] == "too_many_connections", refused
        assert (await two.request({"type": "open"}))["code"] == "too_many_connections"
        assert (await two.request({"type": "ping"}))["type"] == "pong"
        over = await api.http.get(f"/v1/sessions/{session_id}/events", params={"follow": "false"})
        assert over.status_code == 429 and over.json()["code"] == "too_many_connections", over.text
        assert over.headers["content-type"] == "application/problem+json"
        bob = await WsClient.connect(gateway.ws_url, TOKENS["bob"])
        assert (await open_session(bob))["type"] == "attached"
        assert (await one.request({"type": "ping"}))["type"] == "pong"  # the attached socket goes on
    async with asyncio.timeout(5):  # the stream ended: its place comes back once the gateway sees it
        while (reply := await two.request({"type": "attach", "session_id": session_id, "after": 0}))["type"] == "error":
            assert reply["code"] == "too_many_connections"
            await asyncio.sleep(0.05)
    assert reply["type"] == "attached"
    for client in (one, two, bob):
        await client.close()
    await api.close()
