"""Session lifecycle: CLI death and resume, idle reaping, explicit close, model and mode changes."""

import asyncio
import json
import contextlib
import os
import shutil
import signal

import msgspec
import pytest
from websockets.exceptions import ConnectionClosed

from gateway.scripted_model.script import expected_texts
from gateway.scripted_model.server import ScriptedModelServer
from tests.support.client import WsClient
from tests.support.flows import attach, open_session, query
from tests.support.gateway import TOKENS, RunningGateway, run_gateway
from tests.support.processes import (
    alive, cli_children, cli_pids, cmdline, listening_sockets, session_processes, session_processes_once, survivors,
)


async def drain_until_closed(client: WsClient) -> None:
    with contextlib.suppress(ConnectionClosed):
        while True:
            await client.recv(timeout=5)


def workdir(gateway: RunningGateway, session_id: str):  # type: ignore[no-untyped-def]
    return gateway.app.state.settings.sessions_dir / session_id / "work"


async def test_cli_killed_mid_turn_then_conversation_resumes(gateway: RunningGateway, alice: WsClient, model_server: ScriptedModelServer) -> None:
    attached = await open_session(alice)
    session_id = attached["session"]["session_id"]
    first = await query(alice, "SCRIPT:hello")
    await alice.event("result", lambda e: e["query_id"] == first["id"])
    killed = await query(alice, "SCRIPT:long")
    await alice.event("stream", lambda e: e["event"].get("delta", {}).get("type") == "text_delta")
    [pid] = cli_pids(workdir(gateway, session_id))
    os.kill(pid, signal.SIGKILL)
    error = await alice.event("error")
    assert error["code"] == "agent_exited" and error["recoverable"] is True
    lost = await alice.event("result", lambda e: e["query_id"] == killed["id"])  # the turn still ends with a result
    assert lost["subtype"] == "agent_exited" and lost["is_error"] is True and lost["errors"]
    await alice.event("state", lambda e: e["state"] == "idle" and e.get("reason") == "agent_exited")
    # The next query starts a new CLI that resumes the same conversation.
    model_server.requests.clear()
    again = await query(alice, "SCRIPT:hello")
    result = await alice.event("result", lambda e: e["query_id"] == again["id"], timeout=60)
    assert result["is_error"] is False
    [new_pid] = cli_pids(workdir(gateway, session_id))
    assert new_pid != pid
    prompts = [str(m) for r in model_server.requests for m in r.body.get("messages", [])]
    assert any("SCRIPT:long" in p for p in prompts) or any("SCRIPT:hello" in p for p in prompts[:-1])


@pytest.mark.skipif(shutil.which("socat") is None, reason="the CLI starts no socat without it")
async def test_nothing_a_killed_cli_started_outlives_it(gateway: RunningGateway, alice: WsClient) -> None:
    """The CLI's sandbox runs a `socat` listening on a Unix socket in /tmp; killed, the CLI can't
    stop it, and it would live on under init with its socket file."""
    attached = await open_session(alice)
    await query(alice, "SCRIPT:long")
    await alice.event("stream", lambda e: e["event"].get("delta", {}).get("type") == "text_delta")
    started = await session_processes_once(gateway.app.state.settings.sessions_dir, lambda found: len(listening_sockets(found)) == 1)
    sockets = listening_sockets(started)
    [pid] = cli_pids(workdir(gateway, attached["session"]["session_id"]))
    assert pid in started and len(started) >= 2 and sockets and all(s.exists() for s in sockets)
    os.kill(pid, signal.SIGKILL)
    await alice.event("error", lambda e: e["code"] == "agent_exited")
    assert [cmdline(pid) for pid in await survivors(started, 5)] == []
    assert [s for s in sockets if s.exists()] == []


@pytest.mark.parametrize(("mode", "turn"), [("soft", True), ("hard", True), ("soft", False)])
async def test_cli_killed_during_a_reset_ends_the_reset_at_once(gateway: RunningGateway, alice: WsClient, mode: str, turn: bool) -> None:
    """A reset waiting on the CLI stops waiting when the CLI dies: on its interrupt of a running
    turn (soft or hard), or on its `/clear` (soft, idle). The CLI is frozen (SIGSTOP) before the
    reset, so the reset is surely waiting on it when it is killed."""
    attached = await open_session(alice)
    session_id = attached["session"]["session_id"]
    if turn:
        await query(alice, "SCRIPT:long")
        await alice.event("stream", lambda e: e["event"].get("delta", {}).get("type") == "text_delta")
    [pid] = cli_pids(workdir(gateway, session_id))
    os.kill(pid, signal.SIGSTOP)
    await alice.send({"type": "reset_conversation", "mode": mode, "id": "r1"})
    await asyncio.sleep(0.3)  # the reset is under way, waiting on the frozen CLI (else it would take 15 s)
    os.kill(pid, signal.SIGKILL)
    ack = await alice.until(lambda f: f.get("id") == "r1", timeout=8)  # not the 15 s control timeout
    assert ack["type"] == "ack"
    await alice.event("error", lambda e: e["code"] == "agent_exited")
    await alice.event("conversation_reset")
    done = await query(alice, "SCRIPT:hello")
    result = await alice.event("result", lambda e: e["query_id"] == done["id"], timeout=60)
    assert result["is_error"] is False
    assert not alive(pid)


async def test_a_control_request_its_cli_was_replaced_under_fails_at_once(gateway: RunningGateway, alice: WsClient) -> None:
    """A `set_model` the CLI hasn't answered when a hard reset from another tab replaces that CLI is
    refused (`agent_error`) at once, not after the 15 s control timeout: the SDK's disconnect leaves
    its pending control requests to time out (the fuzz test saw three frames held 15 s so)."""
    session_id = (await open_session(alice))["session"]["session_id"]
    tab2 = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    await attach(tab2, session_id)
    [pid] = cli_pids(workdir(gateway, session_id))
    os.kill(pid, signal.SIGSTOP)  # it answers no control request now
    await alice.send({"type": "set_model", "model": "claude-haiku-4-5", "id": "m1"})
    await asyncio.sleep(0.3)  # the request waits on the frozen CLI
    loop = asyncio.get_running_loop()
    replaced_at = loop.time()
    await tab2.send({"type": "reset_conversation", "mode": "hard", "id": "r1"})
    answer = await alice.until(lambda f: f.get("id") == "m1", timeout=8)
    assert (answer["type"], answer["code"]) == ("error", "agent_error"), answer
    assert loop.time() - replaced_at < 5
    assert (await alice.request({"type": "ping"}))["type"] == "pong"  # the socket's next frames run
    assert (await tab2.until(lambda f: f.get("id") == "r1", timeout=40))["type"] == "ack"  # stopping a frozen CLI takes the SDK's ~10 s
    assert "model_changed" not in alice.kinds()
    done = await query(alice, "SCRIPT:hello")
    assert (await alice.event("result", lambda e: e["query_id"] == done["id"], timeout=60))["is_error"] is False
    assert not alive(pid)
    await tab2.close()


async def test_queries_dropped_by_a_reset_or_a_close_still_end_with_a_result(gateway: RunningGateway, alice: WsClient) -> None:
    """Every query ends with exactly one `result`: a client waiting on one (a spinner, `run()`) is never left hanging."""
    attached = await open_session(alice)
    tab2 = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    await attach(tab2, attached["session"]["session_id"])
    running = await query(alice, "SCRIPT:long")
    await alice.event("stream", lambda e: e["event"].get("delta", {}).get("type") == "text_delta")
    queued = [await query(alice, "SCRIPT:hello") for _ in range(2)]
    assert all(q["result"]["queued"] for q in queued)
    assert (await alice.request({"type": "reset_conversation", "mode": "soft"}))["type"] == "ack"
    assert (await alice.event("result", lambda e: e["query_id"] == running["id"]))["terminal_reason"] == "aborted_streaming"
    for dropped in queued:
        result = await alice.event("result", lambda e: e["query_id"] == dropped["id"])
        assert result["subtype"] == "cancelled" and result["errors"] == ["the conversation was reset"]
    # A close ends the running turn and the queued queries alike, before `closed`.
    running = await query(alice, "SCRIPT:long")
    await alice.event("stream", lambda e: e["event"].get("delta", {}).get("type") == "text_delta")
    waiting = await query(alice, "SCRIPT:hello")
    await tab2.request({"type": "close"})
    await drain_until_closed(alice)
    kinds = [(f["event"]["kind"], f["event"].get("query_id"), f["event"].get("state")) for f in alice.events]
    closed_at = kinds.index(("state", None, "closed"))
    for ended in (running, waiting):
        [at] = [i for i, k in enumerate(kinds) if k[:2] == ("result", ended["id"])]
        assert at < closed_at, kinds
    results = [k[1] for k in kinds if k[0] == "result"]
    assert len(results) == len(set(results)) == 5  # one each, none twice
    await tab2.close()


async def test_a_query_sent_during_a_reset_runs_after_it_in_the_new_conversation(
    gateway: RunningGateway, alice: WsClient, model_server: ScriptedModelServer
) -> None:
    """Another tab's query that arrives while a reset waits for the running turn to stop waits
    for the reset too: it must not slip in between the turn's end and the `/clear`."""
    attached = await open_session(alice)
    session_id = attached["session"]["session_id"]
    tab2 = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    await attach(tab2, session_id)
    await query(alice, "SCRIPT:long before-reset-marker")
    await alice.event("stream", lambda e: e["event"].get("delta", {}).get("type") == "text_delta")
    [pid] = cli_pids(workdir(gateway, session_id))
    os.kill(pid, signal.SIGSTOP)  # holds the reset in its wait for the turn to stop
    await alice.send({"type": "reset_conversation", "mode": "soft", "id": "r1"})
    await asyncio.sleep(0.3)
    late = await query(tab2, "SCRIPT:hello after-reset-marker")
    assert late["result"]["queued"] is True
    os.kill(pid, signal.SIGCONT)
    assert (await alice.until(lambda f: f.get("id") == "r1"))["type"] == "ack"
    result = await tab2.event("result", lambda e: e["query_id"] == late["id"], timeout=60)
    assert result["subtype"] == "success", result
    seen = [json.dumps(r.body.get("messages", [])) for r in model_server.requests if "after-reset-marker" in json.dumps(r.body)]
    assert seen and "before-reset-marker" not in seen[-1]
    order = [(f["event"]["kind"], f["event"].get("query_id")) for f in tab2.events]
    assert order.index(("conversation_reset", None)) < order.index(("turn_started", late["id"]))
    # The transcript starts again at the reset, keeping the query that waited for it (it ran after).
    rebuilt = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    snapshot = (await attach(rebuilt, session_id, after=1, epoch="another"))["snapshot"]
    kinds = [(e["kind"], e.get("query_id")) for e in snapshot["transcript"]]
    assert kinds[:2] == [("user_query", late["id"]), ("conversation_reset", None)], kinds
    assert kinds[-1] == ("result", late["id"]) and "before-reset-marker" not in json.dumps(snapshot["transcript"])
    await rebuilt.close()
    await tab2.close()


async def test_a_query_dropped_by_a_reset_while_its_cli_starts_is_never_sent(gateway: RunningGateway, alice: WsClient) -> None:
    """A query waiting for its CLI to (re)start when a reset drops it is not sent once the CLI is
    up: its `cancelled` result is its last word, and the `/clear` is not mistaken for its turn."""
    attached = await open_session(alice)
    [pid] = cli_pids(workdir(gateway, attached["session"]["session_id"]))
    os.kill(pid, signal.SIGKILL)
    await alice.event("error", lambda e: e["code"] == "agent_exited")
    dropped = await query(alice, "SCRIPT:hello")  # starts a new CLI (about 0.5 s)
    assert (await alice.request({"type": "reset_conversation", "mode": "soft"}, timeout=60))["type"] == "ack"
    result = await alice.event("result", lambda e: e["query_id"] == dropped["id"])
    assert result["subtype"] == "cancelled"
    after = await query(alice, "SCRIPT:hello")
    assert (await alice.event("result", lambda e: e["query_id"] == after["id"], timeout=60))["subtype"] == "success"
    await asyncio.sleep(0.5)  # anything the dropped query would have set off has arrived by now
    results = [f["event"].get("query_id") for f in alice.events if f["event"]["kind"] == "result"]
    assert results == [dropped["id"], after["id"]], results
    kinds = alice.kinds()
    assert "assistant_message" not in kinds[: kinds.index("conversation_reset")], kinds


BACKGROUND = "SCRIPT:" + json.dumps({"steps": [
    [{"tool": "Bash", "input": {"command": "sleep 0.5; echo done", "description": "wait", "run_in_background": True}}],
    [{"text": "Started it."}],
    [{"text": "The background command finished. ", "repeat": 20}],  # the CLI's own turn, when it hears of that
], "chunk": 8, "delay_ms": 20})


async def test_a_turn_the_cli_starts_itself_does_not_end_a_clients_query(alice: WsClient) -> None:
    """A background command's end makes the CLI start a turn of its own. A query sent while that
    turn runs ends with its own result, not that turn's; that turn's result has no query."""
    await open_session(alice)
    first = await query(alice, BACKGROUND)
    await alice.event("result", lambda e: e["query_id"] == first["id"], timeout=30)
    await alice.event("task", lambda e: e["subtype"] == "task_notification", timeout=30)
    await alice.event("stream", lambda e: e["event"].get("delta", {}).get("type") == "text_delta")  # its turn streams
    second = await query(alice, "SCRIPT:hello")
    result = await alice.event("result", lambda e: e["query_id"] == second["id"], timeout=30)
    assert result["result"] == expected_texts("hello")[0]
    await asyncio.sleep(0.5)
    results = [f["event"]["query_id"] for f in alice.events if f["event"]["kind"] == "result"]
    assert results.count(second["id"]) == 1 and None in results, results
    assert [f["event"]["state"] for f in alice.events if f["event"]["kind"] == "state"][-1] == "idle"


async def test_interrupt_during_a_reset_leaves_the_reset_alone(gateway: RunningGateway, alice: WsClient, model_server: ScriptedModelServer) -> None:
    """Interrupt stops a running turn. A reset's `/clear`, sent by another tab, is not one: it goes
    through and the conversation is fresh. (One socket's frames run in order, so it takes two.)"""
    attached = await open_session(alice)
    tab2 = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    await attach(tab2, attached["session"]["session_id"])
    first = await query(alice, "SCRIPT:hello first-turn-marker")
    await alice.event("result", lambda e: e["query_id"] == first["id"])
    await alice.send({"type": "reset_conversation", "mode": "soft", "id": "r1"})
    await tab2.event("state", lambda e: e.get("reason") == "conversation_reset")  # the reset is under way
    interrupted = await tab2.request({"type": "interrupt"})
    assert interrupted["result"] == {"interrupted": False}
    assert (await alice.until(lambda f: f.get("id") == "r1"))["type"] == "ack"
    again = await query(alice, "SCRIPT:hello second-turn-marker")
    await alice.event("result", lambda e: e["query_id"] == again["id"])
    seen = [json.dumps(r.body.get("messages", [])) for r in model_server.requests if "second-turn-marker" in json.dumps(r.body)]
    assert seen and "first-turn-marker" not in seen[-1]
    await tab2.close()


async def test_idle_session_is_reaped_and_its_cli_stopped(settings, model_url) -> None:  # type: ignore[no-untyped-def]
    quick = msgspec.structs.replace(settings, idle_timeout_s=0.6, closed_retention_s=60)
    async with run_gateway(quick) as gw:
        client = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        attached = await open_session(client)
        session_id = attached["session"]["session_id"]
        [pid] = cli_pids(workdir(gw, session_id))
        # Attached sockets keep a session alive.
        await asyncio.sleep(1.5)
        assert not (await gw.manager.get("alice", session_id)).closed
        await client.close()
        for _ in range(100):
            if (await gw.manager.get("alice", session_id)).closed:
                break
            await asyncio.sleep(0.05)
        assert (await gw.manager.get("alice", session_id)).state == "closed"
        for _ in range(100):
            if not alive(pid):
                break
            await asyncio.sleep(0.05)
        assert not alive(pid)
        # Within the retention time the session can still be attached to read how it ended.
        late = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        reply = await attach(late, session_id)
        assert reply["type"] == "attached" and reply["session"]["state"] == "closed"
        closed = await late.event("state", lambda e: e["state"] == "closed")
        assert closed["reason"] == "idle_timeout"
        await drain_until_closed(late)
        assert late.close_code == 4009


async def test_a_session_closed_while_its_cli_starts_leaves_no_cli(gateway: RunningGateway) -> None:
    """`open` answers before the CLI is up; closing then (at several points of the start) stops that
    CLI too, and whatever it started meanwhile."""
    before = set(cli_children())
    root = gateway.app.state.settings.sessions_dir
    for delay in (0.0, 0.01, 0.1, 0.3, 0.6):
        client = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
        reply = await client.request({"type": "open"})
        assert reply["session"]["state"] == "starting"
        await asyncio.sleep(delay)
        await client.request({"type": "close"})
        await drain_until_closed(client)
        assert session_processes(root) == [], delay
    # A hard reset starts a new CLI; a close sent while it starts stops that one too.
    client = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    await open_session(client)
    await client.send({"type": "reset_conversation", "mode": "hard", "id": "r1"})
    await asyncio.sleep(0.1)
    await client.send({"type": "close", "id": "c1"})
    await drain_until_closed(client)
    for _ in range(100):  # a CLI that leaked would be up within a second or two
        await asyncio.sleep(0.05)
    assert set(cli_children()) - before == set()
    # Nor any session's files: the directories made in a thread are gone with the session.
    root = gateway.app.state.settings.sessions_dir
    assert sorted(p.name for p in root.iterdir()) == [".claude", ".mcp.json"]


async def test_a_session_closed_while_its_cli_starts_ends_what_the_cli_started(
    gateway: RunningGateway, tmp_path, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    """The CLI runs `npm root -g` as it starts; here that `npm` hangs, and the session is closed
    meanwhile. The CLI, waiting for it, ignores the end of its input, so the SDK terminates it after
    5 s, leaving `npm` running (a real one wrote into the session's directory after that was
    removed); the runner ends it before the files go."""
    fake = tmp_path / "bin" / "npm"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")  # the CLI's PATH is the gateway's
    root = gateway.app.state.settings.sessions_dir
    client = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    await client.request({"type": "open"})
    started = await session_processes_once(root, lambda found: any(cmdline(pid) == "sleep 30 " for pid in found), 30)
    npm = [pid for pid in started if cmdline(pid) == "sleep 30 "]
    assert npm, [cmdline(pid) for pid in started]
    await client.request({"type": "close"})
    with contextlib.suppress(ConnectionClosed):
        while True:
            await client.recv(timeout=30)
    assert [cmdline(pid) for pid in session_processes(root)] == []


async def test_a_session_closed_during_a_reset_stays_closed(gateway: RunningGateway, alice: WsClient) -> None:
    """`closed` is final: a reset that was under way when another tab closed the session doesn't bring it back."""
    attached = await open_session(alice)
    session_id = attached["session"]["session_id"]
    tab2 = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    await attach(tab2, session_id)
    await alice.send({"type": "reset_conversation", "mode": "hard", "id": "r1"})
    await tab2.event("state", lambda e: e.get("reason") == "conversation_reset")
    await tab2.send({"type": "close", "id": "c1"})
    await drain_until_closed(tab2)
    await drain_until_closed(alice)
    await asyncio.sleep(1.0)  # the reset's CLI start, had it gone on, would be done
    states = [f["event"]["state"] for f in alice.events if f["event"]["kind"] == "state"]
    assert states[-1] == "closed", states
    again = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    reply = await attach(again, session_id)
    assert reply["session"]["state"] == "closed"
    await drain_until_closed(again)


async def test_close_frame_ends_session_for_every_socket(gateway: RunningGateway, alice: WsClient) -> None:
    attached = await open_session(alice)
    session_id = attached["session"]["session_id"]
    tab2 = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    await attach(tab2, session_id)
    [pid] = cli_pids(workdir(gateway, session_id))
    ack = await alice.request({"type": "close"})
    assert ack["type"] == "ack"
    for tab in (alice, tab2):
        await tab.event("state", lambda e: e["state"] == "closed")
        await drain_until_closed(tab)
        assert tab.close_code == 4009
    assert not alive(pid)
    # The closed session still replays its history, then the socket closes with 4009.
    again = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    reply = await attach(again, session_id)
    assert reply["type"] == "attached" and reply["session"]["state"] == "closed"
    await drain_until_closed(again)
    assert again.close_code == 4009 and again.last_seq == alice.last_seq


async def test_change_model_and_permission_mode(gateway: RunningGateway, alice: WsClient) -> None:
    await open_session(alice)
    ack = await alice.request({"type": "set_model", "model": "claude-opus-4-1"})
    assert ack["type"] == "ack"
    changed = await alice.event("model_changed")
    assert changed["model"] == "claude-opus-4-1" and changed["by"]["principal"] == "alice"
    refused = await alice.request({"type": "set_model", "model": "gpt-5"})
    assert refused["code"] == "model_not_allowed"
    ack = await alice.request({"type": "set_permission_mode", "mode": "acceptEdits"})
    assert ack["type"] == "ack"
    assert (await alice.event("permission_mode_changed"))["mode"] == "acceptEdits"
    refused = await alice.request({"type": "set_permission_mode", "mode": "bypassPermissions"})
    assert refused["code"] == "mode_not_allowed"
    # acceptEdits lets the Write tool run without asking; the new model serves the turn.
    done = await query(alice, "SCRIPT:write")
    result = await alice.event("result", lambda e: e["query_id"] == done["id"])
    assert result["is_error"] is False
    assert not any(f["event"]["kind"] == "permission_request" for f in alice.events)
    # The CLI maps the alias to a concrete model id; the request it sent is for an Opus model.
    message = await alice.event("assistant_message")
    assert "opus" in message["model"]


async def test_model_and_mode_changed_while_the_cli_starts_apply_to_it(alice: WsClient) -> None:
    """`open` answers before the CLI is up; changes sent then reach the CLI that was starting."""
    reply = await alice.request({"type": "open"})
    assert reply["session"]["state"] == "starting"
    assert (await alice.request({"type": "set_model", "model": "claude-opus-4-1"}))["type"] == "ack"
    assert (await alice.request({"type": "set_permission_mode", "mode": "acceptEdits"}))["type"] == "ack"
    await alice.state("idle", timeout=60)
    done = await query(alice, "SCRIPT:write")
    result = await alice.event("result", lambda e: e["query_id"] == done["id"])
    assert result["is_error"] is False
    assert not any(f["event"]["kind"] == "permission_request" for f in alice.events)  # acceptEdits took
    assert "opus" in (await alice.event("assistant_message"))["model"]  # and so did the model


@pytest.mark.parametrize("mode", ["soft", "hard"])
async def test_reset_while_the_cli_starts_leaves_one_cli(gateway: RunningGateway, alice: WsClient, mode: str) -> None:
    """A reset sent while the first CLI starts waits for it: the session ends up with one CLI, never two."""
    before = set(cli_children())
    reply = await alice.request({"type": "open"})
    assert reply["session"]["state"] == "starting"
    assert (await alice.request({"type": "reset_conversation", "mode": mode}))["type"] == "ack"
    await alice.event("conversation_reset")
    await alice.state("idle", timeout=60)
    # The session goes idle once, when the reset is done, not when the first CLI came up under it.
    kinds = [(f["event"]["kind"], f["event"].get("state")) for f in alice.events]
    assert kinds.index(("conversation_reset", None)) < kinds.index(("state", "idle"))
    done = await query(alice, "SCRIPT:hello")
    await alice.event("result", lambda e: e["query_id"] == done["id"])
    for _ in range(40):  # a second CLI would have started by now
        await asyncio.sleep(0.05)
    assert len(set(cli_children()) - before) == 1


async def test_cli_that_cannot_start_is_reported_and_retried(settings, model_url) -> None:  # type: ignore[no-untyped-def]
    broken = msgspec.structs.replace(settings, cli_path="/bin/false")
    async with run_gateway(broken) as gw:
        client = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        reply = await client.request({"type": "open"})
        assert reply["type"] == "attached" and reply["session"]["state"] == "starting"  # answered at once
        error = await client.event("error", timeout=30)
        assert error["code"] == "agent_start_failed" and error["recoverable"] is True
        await client.event("state", lambda e: e["state"] == "failed")
        # The next query tries again; it fails the same way and says so.
        ack = await query(client, "SCRIPT:hello")
        assert ack["result"]["queued"] is False
        again = await client.event("error", timeout=30)
        assert again["code"] == "agent_unavailable"
        result = await client.event("result", lambda e: e["query_id"] == ack["id"])
        assert result["subtype"] == "agent_unavailable" and result["is_error"] is True
        assert (await client.request({"type": "ping"}))["type"] == "pong"
        await client.close()


async def test_session_directories_that_cannot_be_made_are_a_start_failure(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The directories are made in a thread when the CLI starts; failing there fails the start, not the gateway."""
    (tmp_path / "not-a-dir").write_text("")
    broken = msgspec.structs.replace(settings, sessions_dir=tmp_path / "not-a-dir" / "sessions")
    async with run_gateway(broken) as gw:
        client = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        reply = await client.request({"type": "open"})
        assert reply["type"] == "attached"
        error = await client.event("error", timeout=30)
        assert error["code"] == "agent_start_failed"
        assert (await client.request({"type": "ping"}))["type"] == "pong"
        await client.close()


async def test_sessions_root_keeps_the_cli_sandbox_placeholders(gateway: RunningGateway, alice: WsClient) -> None:
    """Concurrent Bash calls in different sessions must not race on placeholders in shared directories."""
    attached = await open_session(alice)
    root = gateway.app.state.settings.sessions_dir
    for directory in (root, root / attached["session"]["session_id"]):
        assert (directory / ".claude").is_dir() and (directory / ".mcp.json").is_file()
    await query(alice, "SCRIPT:bash")
    request = await alice.event("permission_request")
    await alice.request({"type": "permission_response", "request_id": request["request_id"], "decision": "allow"})
    await alice.event("result")
    assert (root / ".mcp.json").is_file()  # the CLI left the gateway's own alone


async def wait_dead(pid: int, timeout: float = 30.0) -> None:
    """A frozen CLI is killed by the SDK's disconnect: stdin closed, 5 s, SIGTERM, 5 s, SIGKILL."""
    async with asyncio.timeout(timeout):
        while alive(pid):
            await asyncio.sleep(0.1)


async def freeze_mid_stream(gw: RunningGateway, client: WsClient) -> tuple[dict, int]:  # type: ignore[type-arg]
    """A turn whose CLI will never finish it: SIGSTOP the CLI once the answer streams."""
    attached = await open_session(client)
    ack = await query(client, "SCRIPT:long")
    await client.event("stream", lambda e: e["event"].get("delta", {}).get("type") == "text_delta")
    [pid] = cli_pids(workdir(gw, attached["session"]["session_id"]))
    os.kill(pid, signal.SIGSTOP)
    return ack, pid


async def assert_replaced_and_resumes(gw: RunningGateway, client: WsClient, ack: dict, pid: int) -> None:  # type: ignore[type-arg]
    result = await client.event("result", lambda e: e["query_id"] == ack["id"], timeout=30)
    assert result["subtype"] == "agent_unresponsive" and result["is_error"] and result["errors"], result
    await client.event("state", lambda e: e["state"] == "idle" and e.get("reason") == "agent_unresponsive")
    assert (await client.event("error"))["code"] == "agent_unresponsive"
    await wait_dead(pid)
    again = await query(client, "SCRIPT:hello")
    done = await client.event("result", lambda e: e["query_id"] == again["id"], timeout=60)
    assert done["is_error"] is False


async def test_an_interrupt_the_cli_does_not_honour_replaces_it_and_ends_the_query(
    gateway: RunningGateway, alice: WsClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frozen CLI takes no interrupt: the interrupt still acks, the query ends `agent_unresponsive`
    within the bound, the CLI is replaced and the conversation goes on. Before, the state stayed
    `interrupted` for good and every later query queued behind it."""
    monkeypatch.setattr("gateway.sessions.session.CONTROL_TIMEOUT_S", 2.0)
    ack, pid = await freeze_mid_stream(gateway, alice)
    reply = await alice.request({"type": "interrupt"}, timeout=20)
    assert reply["type"] == "ack" and reply["result"] == {"interrupted": True}, reply
    await assert_replaced_and_resumes(gateway, alice, ack, pid)


async def test_the_watchdog_ends_a_turn_whose_cli_falls_silent(settings) -> None:  # type: ignore[no-untyped-def]
    async with run_gateway(msgspec.structs.replace(settings, turn_watchdog_s=2.0)) as gw:
        client = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        ack, pid = await freeze_mid_stream(gw, client)
        await assert_replaced_and_resumes(gw, client, ack, pid)
        await client.close()


async def test_a_busy_session_nobody_is_attached_to_is_reaped_after_the_watchdog_time(settings) -> None:  # type: ignore[no-untyped-def]
    """Waiting on an approval with a far deadline and nobody there: after `idle_timeout_s` +
    `turn_watchdog_s` of quiet the session is closed and its CLI stopped."""
    from gateway.profiles import DEMO_PROFILE

    patient = msgspec.structs.replace(DEMO_PROFILE, approval_timeout_s=600.0)
    quick = msgspec.structs.replace(settings, idle_timeout_s=0.5, turn_watchdog_s=2.0, closed_retention_s=60)
    async with run_gateway(quick, {"default": patient}) as gw:
        client = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        attached = await open_session(client)
        session_id = attached["session"]["session_id"]
        [pid] = cli_pids(workdir(gw, session_id))
        await query(client, "SCRIPT:bash")
        await client.event("permission_request")
        await client.close()
        await asyncio.sleep(1.5)  # past the idle timeout, not past it plus the watchdog time
        assert (await gw.manager.get("alice", session_id)).state == "awaiting_approval"
        await wait_dead(pid, timeout=15)
        late = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        await attach(late, session_id)
        closed = await late.event("state", lambda e: e["state"] == "closed")
        assert closed["reason"] == "idle_timeout"
        await drain_until_closed(late)


def huge_reply(size: int) -> str:
    """A prompt whose reply is one assistant message of `size` characters."""
    return 'SCRIPT:{"steps": [[{"text": "abcdefgh", "repeat": %d}]], "chunk": 262144}' % (size // 8)


async def test_a_cli_message_over_the_sdks_default_1_mib_arrives_whole(alice: WsClient) -> None:
    """The SDK's default `max_buffer_size` (1 MiB) ended such a turn as `agent_exited`, the reply lost."""
    await open_session(alice)
    ack = await query(alice, huge_reply(3 << 20))
    message = await alice.event("assistant_message", timeout=60)
    assert sum(len(b.get("text", "")) for b in message["content"]) == 3 << 20
    result = await alice.event("result", lambda e: e["query_id"] == ack["id"], timeout=60)
    assert result["is_error"] is False and "error" not in alice.kinds()


async def test_a_cli_message_over_the_limit_ends_the_turn_as_message_too_large(settings) -> None:  # type: ignore[no-untyped-def]
    async with run_gateway(msgspec.structs.replace(settings, max_cli_message_bytes=256 << 10)) as gw:
        client = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        await open_session(client)
        ack = await query(client, huge_reply(512 << 10))
        error = await client.event("error", timeout=60)
        assert error["code"] == "message_too_large" and error["recoverable"] is True, error
        result = await client.event("result", lambda e: e["query_id"] == ack["id"])
        assert result["subtype"] == "message_too_large" and result["is_error"] and result["errors"], result
        await client.event("state", lambda e: e["state"] == "idle" and e.get("reason") == "message_too_large")
        again = await query(client, "SCRIPT:hello")
        done = await client.event("result", lambda e: e["query_id"] == again["id"], timeout=60)
        assert done["is_error"] is False
        await client.close()


async def test_a_turn_wedged_by_a_block_the_api_refuses_is_ended_by_its_interrupt(
    gateway: RunningGateway, alice: WsClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wedge the fuzzer found, past the wire's validation (a frame built in-process): the CLI
    acks the interrupt but never ends the turn. Within the bound the query ends `agent_unresponsive`
    and the session takes queries again."""
    from gateway.wire.client import Query
    from gateway.wire.events import Actor

    monkeypatch.setattr("gateway.sessions.session.CONTROL_TIMEOUT_S", 2.0)
    attached = await open_session(alice)
    session = await gateway.manager.get("alice", attached["session"]["session_id"])
    await session.execute(Query(id="wedge", prompt=[{"type": "text"}]), Actor(principal="alice", connection="test"))  # type: ignore[list-item]
    await alice.state("running")
    await asyncio.sleep(2.0)
    assert "result" not in alice.kinds()  # wedged: without the guard it would stay so for good
    reply = await alice.request({"type": "interrupt"})
    assert reply["type"] == "ack" and reply["result"] == {"interrupted": True}, reply
    result = await alice.event("result", lambda e: e["query_id"] == "wedge", timeout=30)
    assert result["subtype"] == "agent_unresponsive", result
    again = await query(alice, "SCRIPT:hello")
    done = await alice.event("result", lambda e: e["query_id"] == again["id"], timeout=60)
    assert done["is_error"] is False
