"""`/metrics` through the real stack: what it reports is what the clients did, with no identifying label."""

import asyncio
import json
from typing import Any

import httpx
import msgspec
from prometheus_client.parser import text_string_to_metric_families

from tests.support.client import WsClient
from tests.support.flows import attach, open_session, query
from tests.support.gateway import TOKENS, RunningGateway, free_port, run_gateway
from tests.support.http import ApiClient
from tests.support.raw_ws import StalledSocket

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
LABELS = {"limit", "state", "transport", "kind", "outcome", "le"}
BURST = "SCRIPT:" + json.dumps({"steps": [[{"text": "y", "repeat": 700_000}]], "chunk": 7000})


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


class Scraper:
    def __init__(self, url: str) -> None:
        self.url = url

    async def get(self) -> Samples:
        async with httpx.AsyncClient() as http:
            response = await http.get(self.url)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain"), response.text
        return parse(response.text)

    async def until(self, check: Any, timeout: float = 10.0) -> Samples:
        """Scrape until `check(samples)` holds (a sender counts its send once the send returns)."""
        async with asyncio.timeout(timeout):
            while True:
                samples = await self.get()
                if check(samples):
                    return samples
                await asyncio.sleep(0.05)


def count_bytes(client: WsClient) -> list[int]:
    """Record the payload size of every WebSocket message `client` receives."""
    sizes: list[int] = []
    receive = client.ws.recv

    async def recv(*args: Any, **kwargs: Any) -> Any:
        message = await receive(*args, **kwargs)
        sizes.append(len(message.encode() if isinstance(message, str) else message))
        return message

    client.ws.recv = recv  # type: ignore[method-assign]
    return sizes


async def test_metrics_report_what_the_clients_did(settings, model_url) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    configured = msgspec.structs.replace(settings, send_queue_bytes=1024 * 1024, metrics_port=port)
    async with run_gateway(configured) as gw:
        await _exercise(gw, Scraper(f"http://127.0.0.1:{port}/metrics"))


async def _exercise(gw: RunningGateway, scrape: Scraper) -> None:
    # The main port's /metrics wants a token (not a ticket); the metrics port serves the same without one.
    async with httpx.AsyncClient(base_url=gw.http_url) as http:
        assert (await http.get("/metrics")).status_code == 401
        ticket = (await http.post("/v1/tickets", headers={"Authorization": f"Bearer {TOKENS['alice']}"})).json()["ticket"]
        assert (await http.get("/metrics", params={"ticket": ticket})).status_code == 401
        authorized = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKENS['bob']}"})
        assert authorized.status_code == 200 and "gateway_sessions_opened_total" in authorized.text

    # A WebSocket session with one approval answered.
    alice = await WsClient.connect(gw.ws_url, TOKENS["alice"])
    sizes = count_bytes(alice)
    session_id = (await open_session(alice))["session"]["session_id"]
    await query(alice, "SCRIPT:bash")
    request = await alice.event("permission_request")
    pending = await scrape.until(lambda s: value(s, "gateway_approvals_pending") == 1)
    assert value(pending, "gateway_sessions", state="awaiting_approval") == 1
    await alice.request({"type": "permission_response", "request_id": request["request_id"], "decision": "allow"})
    await alice.event("result")
    await alice.request({"type": "ping"})  # the last frames are in the client's hands
    frames = len(alice.frames)
    samples = await scrape.until(lambda s: value(s, "gateway_frames_per_send_sum", transport="ws") == frames)
    assert value(samples, "gateway_frames_per_send_count", transport="ws") == len(sizes)
    assert value(samples, "gateway_sent_bytes_total", transport="ws") == sum(sizes)
    assert value(samples, "gateway_events_total") == alice.last_seq
    assert value(samples, "gateway_sessions_opened_total") == 1
    assert value(samples, "gateway_sessions", state="idle") == 1
    assert value(samples, "gateway_approvals_pending") == 0
    assert value(samples, "gateway_approval_seconds_count", kind="permission", outcome="allowed") == 1
    assert value(samples, "gateway_approval_seconds_count", kind="permission", outcome="denied") == 0
    assert value(samples, "gateway_cli_start_seconds_count") == 1
    assert value(samples, "gateway_session_ready_seconds_count") == 1
    assert value(samples, "gateway_turn_seconds_count") == 1
    assert value(samples, "gateway_first_token_seconds_count") == 1
    assert value(samples, "gateway_connections_open", transport="ws") == 1
    assert value(samples, "gateway_replay_frames_count", transport="ws") == 1  # the open's attach

    # A reader that stalls is dropped with 4008; coming back from its cursor replays exactly what it missed.
    replayed = value(samples, "gateway_replay_frames_sum", transport="ws")
    stalled = await asyncio.to_thread(StalledSocket, gw.port, TOKENS["alice"])
    await asyncio.to_thread(stalled.send, {"type": "attach", "id": "a1", "session_id": session_id, "after": alice.last_seq})
    seen = alice.last_seq
    while value(await scrape.get(), "gateway_slow_consumer_disconnects_total", transport="ws") == 0:
        burst = await query(alice, BURST)
        await alice.event("result", lambda e: e["query_id"] == burst["id"], timeout=60)
    assert await asyncio.to_thread(stalled.close_code) == 4008
    stalled.close()
    await alice.request({"type": "ping"})
    back = await WsClient.connect(gw.ws_url, TOKENS["alice"])
    back.last_seq, back.epoch = seen, alice.epoch
    assert (await attach(back, session_id, after=seen, epoch=alice.epoch))["type"] == "attached"
    while back.last_seq < alice.last_seq:
        await back.recv()
    samples = await scrape.get()
    assert value(samples, "gateway_slow_consumer_disconnects_total", transport="ws") == 1
    assert value(samples, "gateway_replay_frames_count", transport="ws") == 3
    assert value(samples, "gateway_replay_frames_sum", transport="ws") == replayed + alice.last_seq - seen  # the stalled one's was empty

    # An HTTP session read over SSE.
    bob = ApiClient(gw.http_url, "bob")
    await bob.create(prompt="SCRIPT:hello")
    async with bob.stream(follow="true") as stream:
        await stream.event("result", timeout=60)
        await stream.state("idle")
        samples = await scrape.get()
        assert value(samples, "gateway_connections_open", transport="sse") == 1
    await bob.close()
    samples = await scrape.until(lambda s: value(s, "gateway_connections_open", transport="sse") == 0)
    assert value(samples, "gateway_sessions_opened_total") == 2
    assert value(samples, "gateway_events_total") == alice.last_seq + bob.last_seq
    assert value(samples, "gateway_replay_frames_count", transport="sse") == 1
    assert value(samples, "gateway_frames_per_send_sum", transport="sse") + 1 >= len(stream.frames)  # the first write is the attach
    assert value(samples, "gateway_cli_start_seconds_count") == 2

    # Nothing identifies a session, a principal or a credential.
    secrets = {session_id, bob.session_id, "alice", "bob", *TOKENS.values(), ticket}
    for name, labels in samples:
        assert {k for k, _ in labels} <= LABELS, name
        assert not secrets & {v for _, v in labels}, (name, labels)
    await back.close()
    await alice.close()
