"""SIGTERM: sockets close with 1012 (reconnect elsewhere), every CLI stops, the process exits cleanly."""

import asyncio
import signal
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.client import WsClient
from tests.support.flows import open_session, query, result_text, tool_results
from tests.support.gateway import TOKENS
from tests.support.process_gateway import gateway_process
from tests.support.processes import alive, cli_pids


@pytest.mark.parametrize(("event_loop", "runs_on"), [("auto", "uvloop"), ("asyncio", "asyncio")])
async def test_sigterm_closes_sockets_and_stops_every_cli(tmp_path, model_url, event_loop: str, runs_on: str) -> None:  # type: ignore[no-untyped-def]
    async with gateway_process(tmp_path, model_url, AGENT_GATEWAY_EVENT_LOOP=event_loop) as (proc, port):
        url = f"ws://127.0.0.1:{port}/v1/ws"
        clients = [await WsClient.connect(url, TOKENS[name]) for name in ("alice", "bob")]
        sessions = [await open_session(c) for c in clients]
        await query(clients[0], "SCRIPT:long")
        await clients[0].event("stream")
        pids = [pid for s in sessions for pid in cli_pids(tmp_path / "sessions" / s["session"]["session_id"] / "work", parent=proc.pid)]
        assert len(pids) == 2
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        for client in clients:
            with pytest.raises(ConnectionClosed):
                while True:
                    await client.recv(timeout=15)
            assert client.close_code == 1012
        # uvicorn re-raises SIGTERM after its graceful shutdown, so the exit status is the signal's.
        assert await asyncio.to_thread(proc.wait, 20) in (0, -signal.SIGTERM)
        assert time.monotonic() - started < 15
        assert not any(alive(pid) for pid in pids)
        log = (tmp_path / "gateway.log").read_text()
        assert "Traceback" not in log and "Application shutdown complete" in log, log
        assert f"gateway started on {runs_on}" in log, log


async def test_gateway_secrets_never_reach_tool_calls(tmp_path, model_url) -> None:  # type: ignore[no-untyped-def]
    """The SDK hands the gateway's whole environment to the CLI; `serve` scrubs it first."""
    script = '{"steps": [[{"tool": "Bash", "input": {"command": "sh -c env", "description": "env"}}], [{"text": "done"}]]}'
    async with gateway_process(tmp_path, model_url, DATABASE_PASSWORD="hunter2-secret") as (proc, port):
        client = await WsClient.connect(f"ws://127.0.0.1:{port}/v1/ws", TOKENS["alice"])
        await open_session(client)
        await query(client, "SCRIPT:" + script)
        request = await client.event("permission_request")
        await client.request({"type": "permission_response", "request_id": request["request_id"], "decision": "allow"})
        await client.event("result")
        [block] = tool_results(client)
        output = result_text(block)
        assert "PATH=" in output  # the command really ran and printed its environment
        for secret in ("hunter2-secret", TOKENS["alice"], "sk-test", "AGENT_GATEWAY_TOKENS"):
            assert secret not in output
        await client.close()


async def test_sigterm_ends_every_query_with_a_result_and_every_session_closed_before_the_close_frame(tmp_path, model_url) -> None:  # type: ignore[no-untyped-def]
    """uvicorn closes every WebSocket before the lifespan's shutdown runs: the sessions are closed
    first, so each client has its running query's `result` and its session's `closed` before 1012."""
    async with gateway_process(tmp_path, model_url) as (proc, port):
        url = f"ws://127.0.0.1:{port}/v1/ws"
        busy, idle = [await WsClient.connect(url, TOKENS[name]) for name in ("alice", "bob")]
        for client in (busy, idle):
            await open_session(client)
        running = await query(busy, "SCRIPT:long")
        queued = await query(busy, "SCRIPT:hello")
        await busy.event("stream")
        proc.send_signal(signal.SIGTERM)
        for client in (busy, idle):
            with pytest.raises(ConnectionClosed):
                while True:
                    await client.recv(timeout=15)
            assert client.close_code == 1012
            assert client.events[-1]["event"] == {"kind": "state", "state": "closed", "reason": "shutdown"}
        results = [e["event"] for e in busy.events if e["event"]["kind"] == "result"]
        assert [(r["query_id"], r["subtype"]) for r in results] == [(running["id"], "cancelled"), (queued["id"], "cancelled")]
        assert await asyncio.to_thread(proc.wait, 20) in (0, -signal.SIGTERM)


@pytest.mark.parametrize("level", ["info", "debug"])
async def test_no_credential_reaches_the_log(tmp_path, model_url, level: str) -> None:  # type: ignore[no-untyped-def]
    """uvicorn logs every request line with its query string: a ticket (reusable until it expires)
    or a token must never be in the log, at any level, over WebSocket or SSE, accepted or refused."""
    async with gateway_process(tmp_path, model_url, AGENT_GATEWAY_LOG_LEVEL=level) as (proc, port):
        base, token = f"http://127.0.0.1:{port}", TOKENS["alice"]
        bearer = await WsClient.connect(f"ws://127.0.0.1:{port}/v1/ws", token)  # the token as a subprotocol
        session_id = (await open_session(bearer))["session"]["session_id"]
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            ticket = (await http.post("/v1/tickets", headers={"Authorization": f"Bearer {token}"})).json()["ticket"]
            by_ticket = await WsClient.connect(f"ws://127.0.0.1:{port}/v1/ws?ticket={ticket}", subprotocols=["agent-gateway.v1"])
            assert (await by_ticket.request({"type": "attach", "session_id": session_id}))["type"] == "attached"
            await by_ticket.close()
            events = await http.get(f"/v1/sessions/{session_id}/events", params={"ticket": ticket, "follow": "false"})
            assert events.status_code == 200
            refused = await http.get(f"/v1/sessions/{session_id}/events", params={"ticket": ticket + "x", "follow": "false"})
            assert refused.status_code == 401
            listed = await http.get("/v1/sessions", params={"ticket": ticket}, headers={"Authorization": f"Bearer {token}"})
            assert listed.status_code == 200
        await bearer.close()
        proc.terminate()
        await asyncio.to_thread(proc.wait, 20)
    log = (tmp_path / "gateway.log").read_text()
    assert f"/v1/sessions/{session_id}/events?ticket=[redacted]" in log, log  # the request lines are logged
    assert "/v1/ws?ticket=[redacted]" in log, log
    for secret in (ticket, ticket[:20], token):
        assert secret not in log
