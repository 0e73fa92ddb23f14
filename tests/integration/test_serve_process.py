"""SIGTERM: sockets close with 1012 (reconnect elsewhere), every CLI stops, the process exits cleanly.
SIGKILL, or any other death: no CLI, nor anything a CLI started, outlives the gateway."""

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from gateway.config import Settings
from gateway.sessions import proctree
from tests.support.client import WsClient
from tests.support.flows import open_session, query, result_text, tool_results
from tests.support.gateway import TOKENS, run_gateway
from tests.support.process_gateway import gateway_process
from tests.support.processes import (
    alive, children, cli_children, cli_pids, cmdline, listening_sockets, session_processes, session_processes_once, survivors,
)


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
        [watchdog] = children("proctree.py", parent=proc.pid)
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
        assert session_processes(tmp_path / "sessions") == []
        assert await survivors([watchdog], 5) == []
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


@pytest.mark.skipif(shutil.which("socat") is None, reason="the CLI starts no socat without it")
@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])  # they spawn processes and pipes differently
async def test_a_killed_gateway_leaves_no_cli_nor_anything_a_cli_started(tmp_path, model_url, event_loop: str) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL gives the gateway no chance to stop its CLIs. One streams (it would see its stdout
    break and exit), one waits for its tool call (it would live on, with its socat and the tool's
    processes). The kernel kills each CLI (its launcher set PR_SET_PDEATHSIG) and the gateway's
    watchdog ends what they started; socat removes its socket file on the watchdog's SIGTERM."""
    async with gateway_process(tmp_path, model_url, AGENT_GATEWAY_EVENT_LOOP=event_loop) as (proc, port):
        streaming, tooling = [await WsClient.connect(f"ws://127.0.0.1:{port}/v1/ws", TOKENS[name]) for name in ("alice", "bob")]
        for client in (streaming, tooling):
            await open_session(client)
        await query(tooling, "SCRIPT:" + json.dumps({"steps": [[{"tool": "Bash", "input": {"command": "sh -c 'sleep 30; echo done'", "description": "wait"}}]]}))
        request = await tooling.event("permission_request")
        await tooling.request({"type": "permission_response", "request_id": request["request_id"], "decision": "allow"})
        await query(streaming, "SCRIPT:long")
        await streaming.event("stream")
        sessions = tmp_path / "sessions"

        def up(found: list[int]) -> bool:  # both socats, and the tool's command
            return len(listening_sockets(found)) == 2 and any("sleep 30" in cmdline(pid) for pid in found)

        started = await session_processes_once(sessions, up)
        sockets = listening_sockets(started)
        [watchdog] = children("proctree.py", parent=proc.pid)
        assert len(cli_children(proc.pid)) == 2 and up(started), [cmdline(pid) for pid in started]
        proc.kill()
        await asyncio.to_thread(proc.wait)
        assert [cmdline(pid) for pid in await survivors(started, 5)] == []
        assert [cmdline(pid) for pid in await session_processes_once(sessions, lambda found: not found, 5)] == []  # nor one started since
        assert [s for s in sockets if s.exists()] == []
        assert await survivors([watchdog], 5) == []


async def test_a_starting_gateway_ends_what_a_gateway_that_is_gone_left_in_its_sessions_dir(settings: Settings, tmp_path: Path) -> None:
    """If a gateway's watchdog died with it, the next gateway on the same sessions directory ends
    the marked processes it left; nothing of a live gateway, nothing unmarked, nothing elsewhere."""
    root = settings.sessions_dir.resolve()
    gone = f"{os.getpid()}.0:00000000"  # this pid with a start time no process has: a gateway that is gone

    def sleeper(home: Path, marker: str | None) -> subprocess.Popen[bytes]:
        env = {"PATH": os.environ["PATH"], "HOME": str(home)} | ({proctree.MARKER: marker} if marker else {})
        return subprocess.Popen(["sleep", "60"], env=env)

    left = sleeper(root / "s_old" / "home", f"{gone}/1")
    kept = [
        sleeper(root / "s_live" / "home", f"{proctree.new_owner()}/1"),  # a live gateway's
        sleeper(tmp_path / "elsewhere" / "home", f"{gone}/2"),  # another sessions directory's
        sleeper(root / "s_plain" / "home", None),  # not a CLI's
    ]
    try:
        async with run_gateway(settings):
            assert await asyncio.to_thread(left.wait, 5) == -signal.SIGTERM
            assert [p.poll() for p in kept] == [None, None, None]
    finally:
        for p in [left, *kept]:
            p.kill()
            p.wait()


async def test_readiness_fails_where_the_cli_launcher_cannot_run(tmp_path, model_url) -> None:  # type: ignore[no-untyped-def]
    """Every CLI starts through `launch-cli`, which needs `setsid` and `setpriv` (util-linux):
    readiness runs `--version` the same way, so a host without them is not ready."""
    (tmp_path / "bin").mkdir()
    async with gateway_process(tmp_path, model_url, PATH=str(tmp_path / "bin")) as (proc, port):
        async with httpx.AsyncClient() as http:
            ready = await http.get(f"http://127.0.0.1:{port}/readyz")
    assert ready.status_code == 503
    [cli] = [c for c in ready.json()["checks"] if c["name"] == "cli"]
    assert cli["ok"] is False and "setsid" in cli["detail"], cli


@pytest.mark.parametrize(("demo", "reported"), [("on", True), ("off", False), ("auto", False)])
async def test_healthz_says_whether_the_demo_model_answers(tmp_path, model_url, demo: str, reported: bool) -> None:  # type: ignore[no-untyped-def]
    """The chat page labels demo mode from `/healthz`: `auto` with a key set is a real model."""
    async with gateway_process(tmp_path, model_url, AGENT_GATEWAY_DEMO=demo) as (_proc, port), httpx.AsyncClient() as http:
        assert (await http.get(f"http://127.0.0.1:{port}/healthz")).json() == {"status": "ok", "demo": reported}
