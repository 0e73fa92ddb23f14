"""Tool approvals and questions through the real CLI: allow, deny, edit, deadline, two tabs, reconnect."""

import asyncio
import contextlib
import os
import signal

import msgspec
from websockets.exceptions import ConnectionClosed

from gateway.scripted_model.script import expected_texts
from tests.support.client import WsClient
from tests.support.flows import attach, open_session, query, result_text, tool_results
from tests.support.gateway import TOKENS, RunningGateway, run_gateway
from tests.support.processes import cli_pids


async def test_tool_allowed_runs_and_everyone_sees_who_answered(alice: WsClient) -> None:
    await open_session(alice)
    await query(alice, "SCRIPT:bash")
    request = await alice.event("permission_request")
    assert request["tool_name"] == "Bash" and "hello-from-agent" in request["input"]["command"]
    assert request["expires_at"] > 0 and request["request_id"].startswith("req_")
    await alice.state("awaiting_approval")
    ack = await alice.request({"type": "permission_response", "request_id": request["request_id"], "decision": "allow"})
    assert ack["type"] == "ack"
    resolved = await alice.event("request_resolved")
    assert resolved["outcome"] == "allowed" and resolved["by"]["principal"] == "alice"
    await alice.event("result")
    [block] = tool_results(alice)
    assert "hello-from-agent" in result_text(block) and not block.get("is_error")
    assert "The command returned: hello-from-agent" in alice.text()


async def test_tool_denied_with_message(alice: WsClient) -> None:
    await open_session(alice)
    await query(alice, "SCRIPT:bash")
    request = await alice.event("permission_request")
    await alice.request({"type": "permission_response", "request_id": request["request_id"], "decision": "deny", "message": "not today"})
    resolved = await alice.event("request_resolved")
    assert resolved["outcome"] == "denied" and resolved["message"] == "not today"
    await alice.event("result")
    [block] = tool_results(alice)
    assert block["is_error"] and "not today" in result_text(block)
    assert "hello-from-agent" not in result_text(block)


async def test_tool_allowed_with_edited_input(alice: WsClient) -> None:
    await open_session(alice)
    await query(alice, "SCRIPT:bash")
    request = await alice.event("permission_request")
    edited = {**request["input"], "command": "sh -c 'echo edited-by-user'"}
    await alice.request({"type": "permission_response", "request_id": request["request_id"], "decision": "allow", "updated_input": edited})
    resolved = await alice.event("request_resolved")
    assert resolved["updated_input"]["command"] == edited["command"]
    await alice.event("result")
    [block] = tool_results(alice)
    assert "edited-by-user" in result_text(block)


async def test_an_option_that_does_not_fit_the_decision_is_refused_not_ignored(alice: WsClient) -> None:
    """`interrupt` and `message` go with deny, `updated_input` and `apply_suggestions` with allow: sent
    with the other decision they are refused, and the request stays pending for a valid answer."""
    await open_session(alice)
    await query(alice, "SCRIPT:bash")
    request = await alice.event("permission_request")
    misfits = [
        ("allow", {"interrupt": True}), ("allow", {"message": "why"}),
        ("deny", {"updated_input": {"command": "true"}}), ("deny", {"apply_suggestions": [0]}),
    ]
    for decision, option in misfits:
        reply = await alice.request({"type": "permission_response", "request_id": request["request_id"], "decision": decision, **option})
        assert reply["type"] == "error" and reply["code"] == "bad_frame", (decision, option, reply)
        [name] = option
        assert f"`{name}`" in reply["message"], reply
    assert "request_resolved" not in alice.kinds()
    await alice.request({"type": "permission_response", "request_id": request["request_id"], "decision": "allow", "interrupt": False})
    assert (await alice.event("request_resolved"))["outcome"] == "allowed"
    result = await alice.event("result")
    assert result["terminal_reason"] == "completed"
    assert "hello-from-agent" in result_text(tool_results(alice)[0])


async def test_question_answered_with_labels(alice: WsClient) -> None:
    await open_session(alice)
    await query(alice, "SCRIPT:ask")
    question = await alice.event("question")
    assert question["questions"][0]["question"] == "Which color?"
    assert [o["label"] for o in question["questions"][0]["options"]] == ["Red", "Blue"]
    bad = await alice.request({"type": "question_response", "request_id": question["request_id"], "answers": {"Which shape?": "Round"}})
    assert bad["type"] == "error" and bad["code"] == "invalid_answer"
    await alice.request({"type": "question_response", "request_id": question["request_id"], "answers": {"Which color?": "Blue"}})
    resolved = await alice.event("request_resolved")
    assert resolved["outcome"] == "answered" and resolved["answers"] == {"Which color?": "Blue"}
    await alice.event("result")
    assert expected_texts("ask", answer="Blue")[1] in alice.text()


async def test_unanswered_request_expires_with_deny(settings, model_url) -> None:  # type: ignore[no-untyped-def]
    from gateway.profiles import DEMO_PROFILE

    quick = msgspec.structs.replace(DEMO_PROFILE, approval_timeout_s=1.0)
    async with run_gateway(settings, {"default": quick}) as gw:
        client = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        await open_session(client)
        await query(client, "SCRIPT:bash")
        request = await client.event("permission_request")
        resolved = await client.event("request_resolved", timeout=10)
        assert resolved["outcome"] == "expired" and "by" not in resolved
        late = await client.request({"type": "permission_response", "request_id": request["request_id"], "decision": "allow"})
        assert late["type"] == "error" and late["code"] == "request_already_resolved"
        await client.event("result")
        [block] = tool_results(client)
        assert block["is_error"] and "deadline" in result_text(block)
        await client.close()


async def test_two_sockets_first_answer_wins(gateway: RunningGateway, alice: WsClient) -> None:
    attached = await open_session(alice)
    tab2 = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    second = await attach(tab2, attached["session"]["session_id"])
    assert second["type"] == "attached"
    await query(alice, "SCRIPT:bash")
    request = await alice.event("permission_request")
    assert (await tab2.event("permission_request"))["request_id"] == request["request_id"]
    rid = request["request_id"]
    # Both tabs answer at once; exactly one wins, the other gets a clear error.
    await asyncio.gather(
        alice.send({"type": "permission_response", "id": "a1", "request_id": rid, "decision": "allow"}),
        tab2.send({"type": "permission_response", "id": "b1", "request_id": rid, "decision": "deny"}),
    )
    reply_a = await alice.until(lambda f: f.get("id") == "a1")
    reply_b = await tab2.until(lambda f: f.get("id") == "b1")
    assert sorted([reply_a["type"], reply_b["type"]]) == ["ack", "error"]
    loser = reply_a if reply_a["type"] == "error" else reply_b
    assert loser["code"] == "request_already_resolved"
    winner_connection = second["connection"] if reply_b["type"] == "ack" else attached["connection"]
    for tab in (alice, tab2):
        resolved = await tab.event("request_resolved")
        assert resolved["by"] == {"principal": "alice", "connection": winner_connection}
        await tab.event("result")
    assert [f["seq"] for f in alice.events] == [f["seq"] for f in tab2.events]
    await tab2.close()


async def test_pending_request_survives_reconnect(gateway: RunningGateway, alice: WsClient) -> None:
    attached = await open_session(alice)
    await query(alice, "SCRIPT:bash")
    request = await alice.event("permission_request")
    last_seq = alice.last_seq
    alice.abort()
    back = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    back.resume_from(alice)
    reply = await attach(back, attached["session"]["session_id"], after=last_seq, epoch=alice.epoch)
    assert reply["type"] == "attached"
    assert [p["request_id"] for p in reply["session"]["pending"]] == [request["request_id"]]
    await back.request({"type": "permission_response", "request_id": request["request_id"], "decision": "allow"})
    await back.event("result")
    assert "hello-from-agent" in result_text(tool_results(back)[0])
    await back.close()


async def test_applied_suggestion_lasts_for_the_session(alice: WsClient) -> None:
    await open_session(alice)
    await query(alice, "SCRIPT:bash")
    request = await alice.event("permission_request")
    assert request["suggestions"] and request["suggestions"][0]["type"] == "addRules"
    bad = await alice.request({"type": "permission_response", "request_id": request["request_id"], "decision": "allow", "apply_suggestions": [7]})
    assert bad["code"] == "invalid_answer"
    await alice.request({"type": "permission_response", "request_id": request["request_id"], "decision": "allow", "apply_suggestions": [0]})
    await alice.event("result")
    # The same command again: the rule now allows it without asking.
    again = await query(alice, "SCRIPT:bash")
    await alice.event("result", lambda e: e["query_id"] == again["id"])
    assert sum(f["event"]["kind"] == "permission_request" for f in alice.events) == 1
    assert len(tool_results(alice)) == 2


def after_request(client: WsClient) -> list[tuple[str, str | None]]:
    """(kind, state or subtype) of every event from the first `permission_request` on."""
    kinds = [f["event"] for f in client.events]
    start = next(i for i, e in enumerate(kinds) if e["kind"] == "permission_request")
    return [(e["kind"], e.get("state") or e.get("subtype") or e.get("outcome")) for e in kinds[start:]]


async def test_close_with_a_pending_request_settles_it_before_the_result_and_ends_closed(alice: WsClient) -> None:
    """§5: requests end before the query's result, and no state follows that result but the real one."""
    await open_session(alice)
    await query(alice, "SCRIPT:bash")
    await alice.event("permission_request")
    await alice.state("awaiting_approval")
    await alice.request({"type": "close"})
    with contextlib.suppress(ConnectionClosed):
        await alice.until(lambda f: False, timeout=15)
    assert after_request(alice) == [
        ("permission_request", None), ("state", "awaiting_approval"), ("request_resolved", "cancelled"),
        ("result", "cancelled"), ("state", "closed"),
    ]


async def test_cli_death_with_a_pending_request_goes_straight_to_idle(gateway: RunningGateway, alice: WsClient) -> None:
    attached = await open_session(alice)
    await query(alice, "SCRIPT:bash")
    await alice.event("permission_request")
    await alice.state("awaiting_approval")
    [pid] = cli_pids(gateway.app.state.settings.sessions_dir / attached["session"]["session_id"] / "work")
    os.kill(pid, signal.SIGKILL)
    await alice.event("state", lambda e: e["state"] == "idle")
    assert after_request(alice) == [
        ("permission_request", None), ("state", "awaiting_approval"), ("request_resolved", "cancelled"),
        ("error", None), ("result", "agent_exited"), ("state", "idle"),
    ]


def write_to(path: str) -> str:
    return 'SCRIPT:{"steps": [[{"tool": "Write", "input": {"file_path": "%s", "content": "x"}}], [{"text": "wrote: {result}"}]]}' % path


def read_of(path: str) -> str:
    return 'SCRIPT:{"steps": [[{"tool": "Read", "input": {"file_path": "%s"}}], [{"text": "read: {result}"}]]}' % path


async def allow(client: WsClient, request: dict, apply: list[int]) -> dict:
    return await client.request({"type": "permission_response", "request_id": request["request_id"], "decision": "allow", "apply_suggestions": apply})


async def session_mode(gateway: RunningGateway, session_id: str) -> str:
    """The mode a tab attaching now is told: `SessionInfo.permission_mode`."""
    tab = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    try:
        return (await attach(tab, session_id))["session"]["permission_mode"]
    finally:
        await tab.close()


async def test_suggestions_a_profile_does_not_permit_are_refused_and_the_request_stays_pending(gateway: RunningGateway, alice: WsClient, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The default profile permits only `addRules`: the CLI's `setMode` (acceptEdits) and
    `addDirectories` suggestions for a write outside the working directory are refused."""
    attached = await open_session(alice)
    await query(alice, write_to(f"{tmp_path}/out.txt"))
    request = await alice.event("permission_request")
    assert [s["type"] for s in request["suggestions"]] == ["setMode", "addDirectories"]
    for index in (0, 1, 1, 0):
        refused = await allow(alice, request, [index])
        assert refused["type"] == "error" and refused["code"] == "suggestion_not_allowed", refused
        assert request["suggestions"][index]["type"] in refused["message"]
    assert "request_resolved" not in alice.kinds()
    await allow(alice, request, [])
    await alice.event("result")
    assert "permission_mode_changed" not in alice.kinds()
    assert await session_mode(gateway, attached["session"]["session_id"]) == "default"


async def test_a_set_mode_suggestion_is_checked_like_set_permission_mode_and_changes_the_session(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from gateway.profiles import DEMO_PROFILE

    may_set = msgspec.structs.replace(DEMO_PROFILE, name="may_set", permission_updates=["addRules", "setMode"])
    narrow_modes = msgspec.structs.replace(may_set, name="narrow", permission_modes=["default", "plan"])
    async with run_gateway(settings, {"may_set": may_set, "narrow": narrow_modes}) as gw:
        client = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        # acceptEdits is outside this profile's modes: refused as set_permission_mode would be.
        await open_session(client, profile="narrow")
        await query(client, "SCRIPT:write")
        request = await client.event("permission_request")
        assert request["suggestions"] == [{"type": "setMode", "destination": "session", "mode": "acceptEdits"}]
        assert (await allow(client, request, [0]))["code"] == "mode_not_allowed"
        await client.request({"type": "permission_response", "request_id": request["request_id"], "decision": "deny"})
        await client.event("result")
        await client.request({"type": "close"})
        await client.close()

        client = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        attached = await open_session(client, profile="may_set")
        await query(client, "SCRIPT:write")
        request = await client.event("permission_request")
        assert (await allow(client, request, [0]))["type"] == "ack"
        changed = await client.event("permission_mode_changed")
        assert changed["mode"] == "acceptEdits" and changed["by"]["principal"] == "alice"
        await client.event("result")
        assert await session_mode(gw, attached["session"]["session_id"]) == "acceptEdits"
        # The CLI switched too: the next edit runs without asking.
        work = gw.app.state.settings.sessions_dir / attached["session"]["session_id"] / "work"
        again = await query(client, write_to(f"{work}/again.txt"))
        await client.event("result", lambda e: e["query_id"] == again["id"])
        assert sum(f["event"]["kind"] == "permission_request" for f in client.events) == 1
        await client.close()


async def test_an_add_directories_suggestion_applies_when_the_profile_permits_it(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from gateway.profiles import DEMO_PROFILE

    dirs = msgspec.structs.replace(DEMO_PROFILE, permission_updates=["addRules", "addDirectories"])
    (tmp_path / "seen.txt").write_text("outside-the-workdir")
    async with run_gateway(settings, {"default": dirs}) as gw:
        client = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        await open_session(client, allowed_tools=[])  # Read asks, as it does outside the profile's directories
        # Before: reading outside the working directory asks.
        first = await query(client, read_of(f"{tmp_path}/seen.txt"))
        request = await client.event("permission_request")
        await client.request({"type": "permission_response", "request_id": request["request_id"], "decision": "deny"})
        await client.event("result", lambda e: e["query_id"] == first["id"])
        await query(client, write_to(f"{tmp_path}/out.txt"))
        request = await client.event("permission_request", lambda e: e["tool_name"] == "Write")
        assert request["suggestions"][1] == {"type": "addDirectories", "destination": "session", "directories": [str(tmp_path)]}
        assert (await allow(client, request, [0]))["code"] == "suggestion_not_allowed"  # setMode is not permitted
        assert (await allow(client, request, [1]))["type"] == "ack"
        await client.event("result", lambda e: e["query_id"] != first["id"])
        assert (tmp_path / "out.txt").read_text() == "x"
        # After: the directory is the agent's for this session, so the read runs without asking.
        last = await query(client, read_of(f"{tmp_path}/seen.txt"))
        await client.event("result", lambda e: e["query_id"] == last["id"])
        assert sum(f["event"]["kind"] == "permission_request" for f in client.events) == 2
        assert "outside-the-workdir" in result_text(tool_results(client)[-1])
        await client.close()
