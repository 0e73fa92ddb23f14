"""Script selection and stepping, computed from request bodies alone (no server, no CLI)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from gateway.scripted_model import BUILTINS, FINISHED, expected_texts, plan_reply
from gateway.scripted_model.script import MessagesRequest, Text, Thinking, ToolUse

TOOLS = [{"name": "Bash"}, {"name": "AskUserQuestion"}, {"name": "Write"}]
REMINDER = {"type": "text", "text": "<system-reminder>\nSCRIPT:hello\n</system-reminder>\n"}


def user(*texts: str) -> dict[str, Any]:
    """A user prompt shaped like the CLI sends it: a reminder block, then the user's text."""
    return {"role": "user", "content": [REMINDER, *({"type": "text", "text": t} for t in texts)]}


def assistant(text: str = "ok") -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def tool_result(content: Any, is_error: bool = False) -> dict[str, Any]:
    block = {"type": "tool_result", "tool_use_id": "toolu_1", "content": content, "is_error": is_error}
    return {"role": "user", "content": [block, {"type": "text", "text": "<system-reminder>x</system-reminder>"}]}


def plan(*messages: dict[str, Any], **body: Any) -> Any:
    return plan_reply(msgspec.convert({"messages": list(messages), "tools": TOOLS, **body}, MessagesRequest))


def texts(reply: Any) -> str:
    return "".join(b.text for b in reply.content if isinstance(b, Text))


def test_named_script_first_step() -> None:
    reply = plan(user("SCRIPT:hello"))
    assert texts(reply) == expected_texts("hello")[0]
    assert reply.stop_reason == "end_turn"


def test_tool_step_then_result_step() -> None:
    first = plan(user("SCRIPT:bash"))
    assert first.stop_reason == "tool_use"
    tool = first.content[-1]
    assert isinstance(tool, ToolUse) and tool.name == "Bash" and tool.id.startswith("toolu_")
    assert "echo hello-from-agent" in tool.input["command"]
    second = plan(user("SCRIPT:bash"), assistant(), tool_result("hello-from-agent"))
    assert second.stop_reason == "end_turn"
    assert texts(second) == expected_texts("bash", result="hello-from-agent")[1]
    assert texts(plan(user("SCRIPT:bash"), assistant(), tool_result("x"), assistant())) == FINISHED


def test_tool_result_as_block_list_and_answer_extraction() -> None:
    result = [{"type": "text", "text": 'Your questions have been answered: "Which color?"="Blue". Go on.'}]
    reply = plan(user("SCRIPT:ask"), assistant(), tool_result(result))
    assert texts(reply) == expected_texts("ask", answer="Blue")[1]


def test_denied_tool_result_is_quoted() -> None:
    reply = plan(user("SCRIPT:bash"), assistant(), tool_result("no way", is_error=True))
    assert texts(reply) == expected_texts("bash", result="no way")[1]


def test_a_new_prompt_restarts_stepping() -> None:
    reply = plan(user("SCRIPT:bash"), assistant(), tool_result("x"), assistant(), user("SCRIPT:hello"))
    assert texts(reply) == expected_texts("hello")[0]


def test_interrupt_marker_merged_into_next_prompt() -> None:
    blocks = [{"type": "text", "text": "[Request interrupted by user]\n"}, {"type": "text", "text": "SCRIPT:hello"}]
    merged = {"role": "user", "content": blocks}
    assert texts(plan(user("SCRIPT:long"), assistant("Here is"), merged)) == expected_texts("hello")[0]


def test_prompt_merged_into_tool_result_after_interrupt_mid_tool() -> None:
    merged = tool_result("The user doesn't want to proceed", is_error=True)
    merged["content"] += [
        {"type": "text", "text": "[Request interrupted by user for tool use]\n"},
        {"type": "text", "text": "SCRIPT:hello"},
    ]
    assert texts(plan(user("SCRIPT:slowbash"), assistant(), merged)) == expected_texts("hello")[0]


def test_inline_script_with_thinking_and_pacing() -> None:
    spec = '{"steps": [[{"thinking": "hmm"}, {"text": "a"}], [{"text": "b"}]], "chunk": 3, "delay_ms": 7}'
    reply = plan({"role": "user", "content": "Please.\nSCRIPT:" + spec})
    assert isinstance(reply.content[0], Thinking) and reply.content[0].thinking == "hmm"
    assert (texts(reply), reply.chunk, reply.delay_ms) == ("a", 3, 7)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("SCRIPT:nope", "unknown script 'nope'"),
        ('SCRIPT:{"steps": [[{"text": "a", "tool": "Bash"}]]}', "exactly one of"),
        ('SCRIPT:{"steps": [[{"txt": "a"}]]}', "unknown field"),
        ("SCRIPT:{not json", "Script error"),
    ],
)
def test_bad_scripts_are_reported_as_text(spec: str, message: str) -> None:
    reply = plan(user(spec))
    assert texts(reply).startswith("Script error") and message in texts(reply)


def test_tool_blocks_dropped_when_request_offers_no_tools() -> None:
    reply = plan(user("SCRIPT:bash"), tools=[])
    assert reply.stop_reason == "end_turn" and all(isinstance(b, Text) for b in reply.content)


def test_cwd_placeholder_from_environment_section() -> None:
    env = {"role": "system", "content": "# Environment\n - Primary working directory: /tmp/work dir\n - Shell: bash"}
    tool = plan(user("SCRIPT:write"), env).content[-1]
    assert isinstance(tool, ToolUse) and tool.input["file_path"] == "/tmp/work dir/notes.txt"


def test_json_schema_side_request_gets_matching_json() -> None:
    schema = {"type": "object", "properties": {"title": {"type": "string"}, "n": {"type": "integer"}}}
    reply = plan(user("SCRIPT:bash"), output_config={"format": {"type": "json_schema", "schema": schema}})
    assert msgspec.json.decode(texts(reply)) == {"title": "Scripted session", "n": 0}


def test_compact_request_gets_summary_tags() -> None:
    compact = user("Your task is to create a detailed summary of the conversation so far.")
    reply = plan(user("SCRIPT:hello"), assistant(), compact)
    assert "<summary>" in texts(reply) and "</summary>" in texts(reply)


@pytest.mark.parametrize(
    "prompt, name", [("please run it", "bash"), ("Can you ASK me something?", "ask"), ("tell me a story", "long")]
)
def test_demo_keywords_pick_builtins(prompt: str, name: str) -> None:
    assert texts(plan(user(prompt))) == "".join(b.text or "" for b in BUILTINS[name].steps[0])


def test_demo_fallback_quotes_the_prompt_and_lists_triggers() -> None:
    text = texts(plan(user("hi there")))
    assert '"hi there"' in text and "offline demo model" in text
    assert all(word in text for word in ("run", "question", "story", "SCRIPT:"))


def test_no_prompt_at_all() -> None:
    assert texts(plan()).startswith('You said: ""')
