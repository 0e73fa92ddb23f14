"""Drive the real bundled Claude Code CLI against the scripted model server.

Each test owns its ClaudeSDKClient inside the test body: the client holds an anyio task group,
so it must be connected, used and disconnected in one task.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    ClaudeSDKClient,
    Message,
    PermissionResultAllow,
    PermissionResultDeny,
    ResultMessage,
    StreamEvent,
    TextBlock,
    ToolPermissionContext,
    ToolResultBlock,
    UserMessage,
)

from gateway.scripted_model import ScriptedModelServer, cli_env, expected_texts

TURN_TIMEOUT = 30
Decision = PermissionResultAllow | PermissionResultDeny


@pytest.fixture
async def model_server() -> AsyncIterator[ScriptedModelServer]:
    async with ScriptedModelServer() as srv:
        yield srv


class Permissions:
    """A can_use_tool callback that records each call and answers with `decide`."""

    def __init__(self, decide: Callable[[str, dict[str, Any]], Decision] = lambda n, i: PermissionResultAllow()):
        self.decide = decide
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, name: str, tool_input: dict[str, Any], ctx: ToolPermissionContext) -> Decision:
        self.calls.append((name, tool_input))
        return self.decide(name, tool_input)


@pytest.fixture
def options(model_server: ScriptedModelServer, tmp_path: Path) -> Callable[[Permissions], ClaudeAgentOptions]:
    def make(permissions: Permissions) -> ClaudeAgentOptions:
        home, cwd = tmp_path / "home", tmp_path / "cwd"
        home.mkdir(exist_ok=True)
        cwd.mkdir(exist_ok=True)
        return ClaudeAgentOptions(
            env=cli_env(model_server.url, str(home)),
            cwd=str(cwd),
            setting_sources=[],
            include_partial_messages=True,
            can_use_tool=permissions,
        )

    return make


async def turn(client: ClaudeSDKClient, prompt: str) -> list[Message]:
    async with asyncio.timeout(TURN_TIMEOUT):
        await client.query(prompt)
        return [m async for m in client.receive_response()]


def result_of(messages: list[Message]) -> ResultMessage:
    assert isinstance(messages[-1], ResultMessage)
    return messages[-1]


def tool_results(messages: list[Message]) -> list[ToolResultBlock]:
    blocks = [b for m in messages if isinstance(m, UserMessage) and isinstance(m.content, list) for b in m.content]
    return [b for b in blocks if isinstance(b, ToolResultBlock)]


async def test_streamed_text_turn(options: Callable[[Permissions], ClaudeAgentOptions]) -> None:
    async with ClaudeSDKClient(options(Permissions())) as client:
        messages = await turn(client, "SCRIPT:hello")
    deltas = [
        m.event["delta"]["text"]
        for m in messages
        if isinstance(m, StreamEvent) and m.event["type"] == "content_block_delta"
    ]
    assert len(deltas) > 1 and "".join(deltas) == expected_texts("hello")[0]
    result = result_of(messages)
    assert result.subtype == "success" and not result.is_error and result.result == expected_texts("hello")[0]


async def test_bash_allowed_runs_the_tool(options: Callable[[Permissions], ClaudeAgentOptions]) -> None:
    permissions = Permissions()
    async with ClaudeSDKClient(options(permissions)) as client:
        messages = await turn(client, "SCRIPT:bash")
    assert [name for name, _ in permissions.calls] == ["Bash"]
    [block] = tool_results(messages)
    assert not block.is_error and "hello-from-agent" in str(block.content)
    assert result_of(messages).result == expected_texts("bash", result="hello-from-agent")[1]


async def test_bash_denied_model_sees_denial(
    options: Callable[[Permissions], ClaudeAgentOptions], model_server: ScriptedModelServer
) -> None:
    permissions = Permissions(lambda n, i: PermissionResultDeny(message="denied in test"))
    async with ClaudeSDKClient(options(permissions)) as client:
        messages = await turn(client, "SCRIPT:bash")
    [block] = tool_results(messages)
    assert block.is_error
    sent = model_server.requests[-1].body["messages"][-1]["content"][0]
    assert sent["type"] == "tool_result" and sent["is_error"] and "denied in test" in str(sent["content"])
    assert result_of(messages).result == expected_texts("bash", result="denied in test")[1]


async def test_ask_user_question_answer_reaches_the_model(
    options: Callable[[Permissions], ClaudeAgentOptions],
) -> None:
    permissions = Permissions(
        lambda n, i: PermissionResultAllow(updated_input={**i, "answers": {"Which color?": "Blue"}})
    )
    async with ClaudeSDKClient(options(permissions)) as client:
        messages = await turn(client, "SCRIPT:ask")
    [(name, tool_input)] = permissions.calls
    assert name == "AskUserQuestion" and tool_input["questions"][0]["question"] == "Which color?"
    assert result_of(messages).result == expected_texts("ask", answer="Blue")[1]


async def test_write_creates_file_in_cwd(options: Callable[[Permissions], ClaudeAgentOptions], tmp_path: Path) -> None:
    permissions = Permissions()
    async with ClaudeSDKClient(options(permissions)) as client:
        messages = await turn(client, "SCRIPT:write")
    assert [name for name, _ in permissions.calls] == ["Write"]
    assert (tmp_path / "cwd" / "notes.txt").read_text() == "Notes from the scripted model.\n"
    assert (result_of(messages).result or "").startswith("Wrote notes.txt.")


async def test_two_turns_in_one_session(
    options: Callable[[Permissions], ClaudeAgentOptions], model_server: ScriptedModelServer
) -> None:
    async with ClaudeSDKClient(options(Permissions())) as client:
        first = await turn(client, "SCRIPT:hello")
        second = await turn(client, 'SCRIPT:{"steps": [[{"text": "second answer"}]]}')
    assert result_of(first).result == expected_texts("hello")[0]
    assert result_of(second).result == "second answer"
    assert result_of(first).session_id == result_of(second).session_id
    history = [m for m in model_server.requests[-1].body["messages"] if m["role"] != "system"]
    assert [m["role"] for m in history] == ["user", "assistant", "user"]


async def test_interrupt_long_stream_then_continue(options: Callable[[Permissions], ClaudeAgentOptions]) -> None:
    interrupted = False
    async with ClaudeSDKClient(options(Permissions())) as client:
        async with asyncio.timeout(TURN_TIMEOUT):
            await client.query("SCRIPT:long")
            messages: list[Message] = []
            async for m in client.receive_response():
                if isinstance(m, StreamEvent) and m.event["type"] == "content_block_delta" and not interrupted:
                    await client.interrupt()
                    interrupted = True
                messages.append(m)
        after = await turn(client, "SCRIPT:hello")
    result = result_of(messages)
    assert result.is_error and result.subtype == "error_during_execution"
    blocks = [b for m in messages if isinstance(m, AssistantMessage) for b in m.content]
    [partial] = [b.text for b in blocks if isinstance(b, TextBlock)]
    assert expected_texts("long")[0].startswith(partial) and len(partial) < len(expected_texts("long")[0])
    assert result_of(after).result == expected_texts("hello")[0]
