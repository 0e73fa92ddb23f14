"""Issue 11 through the real CLI and the scripted model: what the SDK offers beyond chat, in a client's hands."""

import asyncio
import json
from typing import Any

import msgspec

from gateway.profiles import DEMO_PROFILE
from gateway.wire.client import OutputFormat
from tests.support.client import WsClient
from tests.support.flows import open_session, query
from tests.support.gateway import TOKENS, run_gateway
from tests.support.http import ApiClient

ANSWER_SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


def script(*steps: list[dict[str, Any]]) -> str:
    return "SCRIPT:" + json.dumps({"steps": list(steps)})


def structured(answer: str) -> str:
    """The model answers by calling the CLI's StructuredOutput tool, as a real model does."""
    return script([{"tool": "StructuredOutput", "input": {"answer": answer}}], [{"text": "done"}])


async def test_a_profile_output_format_ends_each_turn_with_structured_output_and_full_usage(settings) -> None:  # type: ignore[no-untyped-def]
    """The result keeps `structured_output`, `model_usage` (with the context window) and the user
    messages their `uuid`."""
    jsonly = msgspec.structs.replace(DEMO_PROFILE, output_format=OutputFormat(schema=ANSWER_SCHEMA))
    async with run_gateway(settings, {"default": jsonly}) as gw:
        client = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        await open_session(client)
        await query(client, structured("forty-two"))
        result = await client.event("result")
        assert result["subtype"] == "success" and result["structured_output"] == {"answer": "forty-two"}
        [(model, usage)] = result["model_usage"].items()
        assert model == "claude-sonnet-4-5" and usage["contextWindow"] > 0 and usage["inputTokens"] > 0
        assert usage["costUSD"] == result["cost_usd"]
        tool_result = next(f["event"] for f in client.events if f["event"]["kind"] == "user_message")
        assert tool_result["uuid"]
        await client.close()


async def test_run_and_poll_returns_the_structured_output_a_client_asked_for(settings) -> None:  # type: ignore[no-untyped-def]
    choosing = msgspec.structs.replace(DEMO_PROFILE, client_output_format=True)
    async with run_gateway(settings, {"default": choosing, "fixed": DEMO_PROFILE}) as gw:
        api = ApiClient(gw.http_url)
        refused = await api.http.post("/v1/sessions", json={"profile": "fixed", "output_format": {"schema": ANSWER_SCHEMA}})
        assert refused.status_code == 403 and refused.json()["code"] == "forbidden_option"
        created = await api.create(prompt=structured("from-a-service"), output_format={"type": "json_schema", "schema": ANSWER_SCHEMA})
        run_id = created["run"]["run_id"]
        async with asyncio.timeout(30):
            while (run := (await api.http.get(f"/v1/sessions/{api.session_id}/runs/{run_id}")).json())["status"] != "completed":
                await asyncio.sleep(0.05)
        assert run["structured_output"] == {"answer": "from-a-service"} == run["result"]["structured_output"]
        await api.close()


def thinking_profile() -> Any:
    from gateway.wire.client import Thinking

    return msgspec.structs.replace(DEMO_PROFILE, thinking=Thinking(type="enabled", budget_tokens=4000, display="summarized"), effort="medium")


async def test_thinking_settings_reach_the_model_and_clients_may_only_narrow_them(settings, model_server) -> None:  # type: ignore[no-untyped-def]
    model_server.requests.clear()  # the model is shared by this process's tests (both backends)
    async with run_gateway(settings, {"default": thinking_profile()}) as gw:
        client = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        for wider in ({"thinking": {"type": "enabled", "budget_tokens": 8000}}, {"thinking": {"type": "adaptive"}}, {"effort": "max"}):
            refused = await client.request({"type": "open", **wider})
            assert refused["type"] == "error" and refused["code"] == "forbidden_option", (wider, refused)
        await open_session(client, thinking={"type": "enabled", "budget_tokens": 2000}, effort="low")
        await query(client, "SCRIPT:hello")
        await client.event("result")
        [sent] = [r.body for r in list(model_server.requests) if r.path == "/v1/messages" and isinstance(r.body, dict)
                  and "SCRIPT:hello" in json.dumps(r.body.get("messages", []))]
        assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2000, "display": "summarized"}  # the profile's display kept
        await client.close()


THOUGHT = "Let me weigh the options one by one before answering."


async def test_a_snapshot_tells_the_thinking_being_streamed_from_the_text(settings) -> None:  # type: ignore[no-untyped-def]
    async with run_gateway(settings, {"default": thinking_profile()}) as gw:
        client = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        attached = await open_session(client)
        await query(client, "SCRIPT:" + json.dumps({"steps": [[{"thinking": THOUGHT}, {"text": "Done thinking."}]], "chunk": 2, "delay_ms": 30}))
        await client.event("stream", lambda e: e["event"].get("delta", {}).get("type") == "thinking_delta")
        api = ApiClient(gw.http_url)
        snapshot = (await api.http.get(f"/v1/sessions/{attached['session']['session_id']}/snapshot")).json()
        assert snapshot["streaming_text"] is None and THOUGHT.startswith(snapshot["streaming_thinking"]) and snapshot["streaming_thinking"]
        await client.event("result")
        [thinking] = [b for f in client.events if f["event"]["kind"] == "assistant_message" for b in f["event"]["content"] if b["type"] == "thinking"]
        assert thinking["thinking"] == THOUGHT
        snapshot = (await api.http.get(f"/v1/sessions/{attached['session']['session_id']}/snapshot")).json()
        assert "streaming_thinking" not in snapshot or snapshot["streaming_thinking"] is None
        await api.close()
        await client.close()


async def test_context_usage_and_compact(alice: WsClient) -> None:
    """`get_context_usage` answers how full the context is; `compact` runs the CLI's /compact as a
    query with its own result, and the context is smaller afterwards."""
    await open_session(alice)
    for _ in range(2):
        await query(alice, script([{"text": "A long answer to fill the context. " * 200}]))
        await alice.event("result")
    before = (await alice.request({"type": "get_context_usage"}))["result"]
    assert before["totalTokens"] > 0 and before["maxTokens"] > 0 and 0 <= before["percentage"] <= 100
    assert {"name", "tokens"} <= set(before["categories"][0]) and "gridRows" not in before and "memoryFiles" not in before
    messages = next(c["tokens"] for c in before["categories"] if c["name"] == "Messages")
    ack = await alice.request({"type": "compact", "instructions": "keep it short"})
    assert ack["type"] == "ack" and ack["result"]["query_id"] == ack["id"]
    result = await alice.event("result", lambda e: e["query_id"] == ack["id"])
    assert result["subtype"] == "success" and not result["is_error"], result
    assert any(f["event"]["kind"] == "system" and f["event"]["subtype"] == "compact_boundary" for f in alice.events)
    after = (await alice.request({"type": "get_context_usage"}))["result"]
    assert next(c["tokens"] for c in after["categories"] if c["name"] == "Messages") < messages
    # The conversation goes on from the summary.
    hello = await query(alice, "SCRIPT:hello")
    assert (await alice.event("result", lambda e: e["query_id"] == hello["id"]))["subtype"] == "success"


BACKGROUND = script(
    [{"tool": "Bash", "input": {"command": "sh -c 'sleep 60; echo late'", "description": "Wait a minute", "run_in_background": True}}],
    [{"text": "Started it: {result}"}],
)


async def test_a_background_task_is_in_the_session_until_a_client_stops_it(gateway, alice: WsClient) -> None:  # type: ignore[no-untyped-def]
    attached = await open_session(alice)
    first = await query(alice, BACKGROUND)
    request = await alice.event("permission_request")
    await alice.request({"type": "permission_response", "request_id": request["request_id"], "decision": "allow"})
    started = await alice.event("task", lambda e: e["subtype"] == "task_started")
    assert started["status"] == "running" and started["description"] and started["task_id"]
    await alice.event("result", lambda e: e["query_id"] == first["id"])
    # A tab attaching now sees the task running, and can stop it.
    tab = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    seen = await tab.request({"type": "attach", "session_id": attached["session"]["session_id"]})
    [task] = seen["session"]["tasks"]
    assert task["task_id"] == started["task_id"] and task["task_type"] == started["task_type"]
    unknown = await tab.request({"type": "stop_task", "task_id": "nope"})
    assert unknown["type"] == "error" and unknown["code"] == "unknown_task"
    assert (await tab.request({"type": "stop_task", "task_id": task["task_id"]}))["type"] == "ack"
    await alice.event("task", lambda e: e["task_id"] == task["task_id"] and e["status"] in ("stopped", "killed"))
    later = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    assert (await later.request({"type": "attach", "session_id": attached["session"]["session_id"]}))["session"]["tasks"] == []
    gone = await tab.request({"type": "stop_task", "task_id": task["task_id"]})
    assert gone["type"] == "error" and gone["code"] == "unknown_task"
    await later.close()
    await tab.close()


async def test_a_subagent_is_a_task_with_the_same_shape(alice: WsClient) -> None:
    """The scripted model drives the subagent too: the Task tool's prompt is the subagent's script."""
    await open_session(alice)
    await query(alice, script(
        [{"tool": "Task", "input": {"description": "Greet", "prompt": "SCRIPT:hello", "subagent_type": "general-purpose"}}],
        [{"text": "The subagent said: {result}"}],
    ))
    started = await alice.event("task", lambda e: e["subtype"] == "task_started")
    assert (started["task_type"], started["description"], started["status"]) == ("local_agent", "Greet", "running")
    done = await alice.event("task", lambda e: e["subtype"] == "task_notification", timeout=30)
    assert done["task_id"] == started["task_id"] and done["status"] == "completed"
    inside = [f["event"] for f in alice.events if f["event"]["kind"] == "assistant_message" and f["event"].get("parent_tool_use_id")]
    assert inside and inside[0]["parent_tool_use_id"] == started["tool_use_id"]


async def test_rewind_files_undoes_what_the_agent_wrote_since_a_query(settings) -> None:  # type: ignore[no-untyped-def]
    checkpoints = msgspec.structs.replace(DEMO_PROFILE, enable_file_checkpointing=True)
    async with run_gateway(settings, {"default": checkpoints, "plain": DEMO_PROFILE}) as gw:
        client = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        attached = await open_session(client)
        notes = gw.app.state.settings.sessions_dir / attached["session"]["session_id"] / "work" / "notes.txt"
        wrote = await query(client, "SCRIPT:write")
        request = await client.event("permission_request")
        await client.request({"type": "permission_response", "request_id": request["request_id"], "decision": "allow"})
        await client.event("result", lambda e: e["query_id"] == wrote["id"])
        assert notes.exists()
        unknown = await client.request({"type": "rewind_files", "query_id": "never-sent"})
        assert unknown["type"] == "error" and unknown["code"] == "unknown_query"
        ack = await client.request({"type": "rewind_files", "query_id": wrote["id"]})
        assert ack["type"] == "ack", ack
        rewound = await client.event("files_rewound")
        assert rewound["query_id"] == wrote["id"] and rewound["by"]["principal"] == "alice"
        assert not notes.exists()
        await client.close()
        # A profile without checkpoints refuses it.
        plain = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        await open_session(plain, profile="plain")
        hello = await query(plain, "SCRIPT:hello")
        await plain.event("result")
        refused = await plain.request({"type": "rewind_files", "query_id": hello["id"]})
        assert refused["type"] == "error" and refused["code"] == "forbidden_option"
        await plain.close()


def sent_prompts(model_server: Any, marker: str) -> list[str]:
    """The user prompts in the model request that carried `marker`: the history the CLI resumed."""
    bodies = [r.body for r in list(model_server.requests) if r.path == "/v1/messages" and isinstance(r.body, dict)]
    [body] = [b for b in bodies if marker in json.dumps(b.get("messages", [])[-1:])]
    texts = []
    for m in body["messages"]:
        if m["role"] == "user":
            blocks = [m["content"]] if isinstance(m["content"], str) else [b.get("text", "") for b in m["content"]]
            texts += [t for t in blocks if t.startswith("SCRIPT:")]
    return texts


async def test_fork_continues_the_conversation_in_a_new_session_now_or_before_a_query(gateway, alice: WsClient, model_server) -> None:  # type: ignore[no-untyped-def]
    model_server.requests.clear()  # the model is shared by this process's tests (both backends)
    attached = await open_session(alice)
    first = await query(alice, script([{"text": "one"}]))
    await alice.event("result", lambda e: e["query_id"] == first["id"])
    second = await query(alice, script([{"text": "two"}]))
    await alice.event("result", lambda e: e["query_id"] == second["id"])

    now = await alice.request({"type": "fork"})
    before_second = await alice.request({"type": "fork", "query_id": second["id"]})
    unknown = await alice.request({"type": "fork", "query_id": "never"})
    assert unknown["type"] == "error" and unknown["code"] == "unknown_query"
    forks = {"now": now["result"]["session_id"], "before_second": before_second["result"]["session_id"]}
    assert attached["session"]["session_id"] not in forks.values()
    bob = await WsClient.connect(gateway.ws_url, TOKENS["bob"])  # a fork belongs to the same principal only
    assert (await bob.request({"type": "attach", "session_id": forks["now"]}))["code"] == "session_not_found"
    await bob.close()

    seen = {}
    for name, session_id in forks.items():
        tab = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
        reply = await tab.request({"type": "attach", "session_id": session_id})
        assert reply["type"] == "attached" and reply["session"]["profile"] == attached["session"]["profile"]
        await tab.state("idle", timeout=60)
        seen[name] = [e["query_id"] for e in (f["event"] for f in tab.events) if e["kind"] == "user_query"]
        marker = f"fork-{name}"
        sent = await query(tab, script([{"text": marker}]))
        result = await tab.event("result", lambda e: e["query_id"] == sent["id"])
        assert result["subtype"] == "success", result
        prompts = sent_prompts(model_server, marker)
        seen[name + "_model"] = [p for p in prompts if marker not in p]
        await tab.close()
    assert seen["now"] == [first["id"], second["id"]] and seen["before_second"] == [first["id"]]
    one, two = script([{"text": "one"}]), script([{"text": "two"}])
    assert seen["now_model"] == [one, two] and seen["before_second_model"] == [one]
    # The source goes on unchanged.
    third = await query(alice, "SCRIPT:hello")
    assert (await alice.event("result", lambda e: e["query_id"] == third["id"]))["subtype"] == "success"


async def test_fork_over_http_is_a_new_session_of_the_caller(gateway) -> None:  # type: ignore[no-untyped-def]
    api = ApiClient(gateway.http_url)
    created = await api.create(prompt="SCRIPT:hello")
    source = api.session_id
    run_id = created["run"]["run_id"]
    async with asyncio.timeout(30):
        while (await api.http.get(f"/v1/sessions/{source}/runs/{run_id}")).json()["status"] != "completed":
            await asyncio.sleep(0.05)
    bad = await api.http.post(f"/v1/sessions/{source}/fork", json={"query_id": "never"})
    assert bad.status_code == 404 and bad.json()["code"] == "unknown_query"
    forked = await api.http.post(f"/v1/sessions/{source}/fork", json={})
    assert forked.status_code == 201, forked.text
    status = forked.json()
    new_id = status["session"]["session_id"]
    assert new_id != source and forked.headers["Location"] == f"/v1/sessions/{new_id}"
    assert status["run"]["run_id"] == run_id and status["run"]["status"] == "completed"  # the conversation it continues
    bob = ApiClient(gateway.http_url, principal="bob")
    assert (await bob.http.post(f"/v1/sessions/{source}/fork", json={})).status_code == 404
    await bob.close()
    await api.close()


def operator_profile() -> Any:
    import sys

    import tests.support.mcp_stdio_server as stdio
    from gateway.profiles import Agent, SdkServer, StdioServer

    return msgspec.structs.replace(
        DEMO_PROFILE,
        allowed_tools=[*DEMO_PROFILE.allowed_tools, "mcp__calc__add", "mcp__shouter__shout"],
        mcp_servers={
            "calc": SdkServer(factory="tests.support.mcp_tools:calculator"),
            "shouter": StdioServer(command=sys.executable, args=[stdio.__file__]),
        },
        agents={"greeter": Agent(description="Greets people", prompt="You greet.", tools=["Read"])},
        slash_commands=["context"],
    )


async def test_operator_declared_mcp_servers_agents_and_commands(settings) -> None:  # type: ignore[no-untyped-def]
    async with run_gateway(settings, {"default": operator_profile()}) as gw:
        client = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        await open_session(client)
        added = await query(client, script([{"tool": "mcp__calc__add", "input": {"a": 2, "b": 40}}], [{"text": "Got {result}"}]))
        await client.event("result", lambda e: e["query_id"] == added["id"])
        assert "Got sum=42" in client.text()
        init = next(f["event"]["data"] for f in client.events if f["event"]["kind"] == "system" and f["event"]["subtype"] == "init")
        assert sorted(init["slash_commands"]) == ["compact", "context"]  # only what clients can run
        assert "greeter" in init["agents"]

        shouted = await query(client, script([{"tool": "mcp__shouter__shout", "input": {"text": "hi"}}], [{"text": "Got {result}"}]))
        await client.event("result", lambda e: e["query_id"] == shouted["id"])
        assert "Got HI" in client.text()

        async def servers() -> dict[str, Any]:
            return {s["name"]: s for s in (await client.request({"type": "get_mcp_status"}))["result"]["mcpServers"]}

        status = await servers()
        assert set(status) == {"calc", "shouter"} and all(s["status"] == "connected" for s in status.values())
        assert [t["name"] for t in status["calc"]["tools"]] == ["add"] and "config" not in status["shouter"]
        unknown = await client.request({"type": "toggle_mcp_server", "name": "filesystem", "enabled": False})
        assert unknown["type"] == "error" and unknown["code"] == "unknown_mcp_server"
        assert (await client.request({"type": "toggle_mcp_server", "name": "shouter", "enabled": False}))["type"] == "ack"
        assert (await servers())["shouter"]["status"] == "disabled"
        assert (await client.request({"type": "toggle_mcp_server", "name": "shouter", "enabled": True}))["type"] == "ack"
        assert (await client.request({"type": "reconnect_mcp_server", "name": "shouter"}))["type"] == "ack"
        assert (await servers())["shouter"]["status"] == "connected"

        refused = await client.request({"type": "run_command", "command": "clear"})
        assert refused["type"] == "error" and refused["code"] == "forbidden_option"
        for smuggled in ({"type": "run_command", "command": "context", "args": "x\n/clear"}, {"type": "compact", "instructions": "x\r/clear"}):
            bad = await client.request(smuggled)
            assert bad["type"] == "error" and bad["code"] == "bad_frame", bad
        ran = await client.request({"type": "run_command", "command": "context"})
        assert ran["type"] == "ack"
        result = await client.event("result", lambda e: e["query_id"] == ran["id"])
        assert result["subtype"] == "success" and "Context Usage" in result["result"] and "mcp__shouter__shout" in result["result"]
        await client.close()


async def test_an_operator_hook_gates_a_tool_call_the_profile_lets_run(settings) -> None:  # type: ignore[no-untyped-def]
    from gateway.profiles import Hook

    hooked = msgspec.structs.replace(
        DEMO_PROFILE, allowed_tools=[*DEMO_PROFILE.allowed_tools, "Bash"],
        hooks=[Hook(event="PreToolUse", matcher="Bash", factory="tests.support.hooks:deny_forbidden_commands")],
    )
    async with run_gateway(settings, {"default": hooked}) as gw:
        client = await WsClient.connect(gw.ws_url, TOKENS["alice"])
        await open_session(client)
        for command in ("sh -c 'echo fine'", "sh -c 'echo forbidden'"):
            sent = await query(client, script([{"tool": "Bash", "input": {"command": command}}], [{"text": "Ran: {result}"}]))
            await client.event("result", lambda e: e["query_id"] == sent["id"])
        assert "permission_request" not in client.kinds()  # Bash is allowed: nobody was asked
        assert "Ran: fine" in client.text() and "the operator's hook said no" in client.text()
        assert "Ran: forbidden" not in client.text()
        await client.close()
