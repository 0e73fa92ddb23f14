"""`--log-format json` on a real `serve` process: one object per line, the ids joined up, no credential anywhere."""

import json
import os
import signal

import httpx

from tests.support.client import WsClient
from tests.support.flows import open_session, query
from tests.support.gateway import TOKENS
from tests.support.process_gateway import gateway_process
from tests.support.processes import cli_pids


async def test_json_logs_carry_the_ids_and_never_a_token_or_ticket(tmp_path, model_url) -> None:  # type: ignore[no-untyped-def]
    async with gateway_process(tmp_path, model_url, AGENT_GATEWAY_LOG_FORMAT="json") as (proc, port):
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            ticket = (await http.post("/v1/tickets", headers={"Authorization": f"Bearer {TOKENS['alice']}"})).json()["ticket"]
            client = await WsClient.connect(f"ws://127.0.0.1:{port}/v1/ws?ticket={ticket}", subprotocols=["agent-gateway.v1"])
            opened = await open_session(client)
            session_id, connection_id = opened["session"]["session_id"], opened["connection"]
            await query(client, "SCRIPT:hello")
            await client.event("result")
            events = await http.get(f"/v1/sessions/{session_id}/events", params={"ticket": ticket, "follow": "false"})
            assert events.status_code == 200
            # The CLI dies: the session's own task reports it, as the session's and nobody's connection.
            [pid] = cli_pids(tmp_path / "sessions" / session_id / "work", parent=proc.pid)
            os.kill(pid, signal.SIGKILL)
            await client.event("error", lambda e: e["code"] == "agent_exited", timeout=30)
            await client.close()

    text = (tmp_path / "gateway.log").read_text()
    records = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    assert all(isinstance(r, dict) and {"ts", "level", "logger", "message"} <= r.keys() for r in records)
    [opened_log] = [r for r in records if "opened by" in r["message"]]
    assert opened_log["session_id"] == session_id and opened_log["principal"] == "alice"
    assert opened_log["connection_id"] == connection_id and opened_log["frame_id"] == opened["id"]
    [attached_log] = [r for r in records if "attached to session" in r["message"] and r["connection_id"] == connection_id]
    assert attached_log["session_id"] == session_id and attached_log["seq"] == 0
    [exited] = [r for r in records if "agent exited" in r["message"]]
    assert exited["session_id"] == session_id and exited["principal"] == "alice" and "connection_id" not in exited
    access = [r for r in records if r["logger"] == "uvicorn.access"]
    assert any(r["method"] == "GET" and r["path"].startswith(f"/v1/sessions/{session_id}/events") and r["status"] == 200 for r in access)
    assert any(r["logger"] == "uvicorn.error" and "WebSocket /v1/ws?ticket=[redacted]" in r["message"] for r in records)
    for secret in (ticket, *TOKENS.values(), "sk-test"):
        assert secret not in text
