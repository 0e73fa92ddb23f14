"""Choose the scripted model's reply from a Messages API request body alone.

Nothing is remembered between requests, so one server can drive any number of CLIs:
the script comes from the latest user prompt and the step from how many assistant
messages have followed it (each tool round trip adds one).
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import msgspec


class ScriptBlock(msgspec.Struct, forbid_unknown_fields=True):
    """One block of a scripted response: exactly one of `text`, `thinking` or `tool`.

    Strings (in text and in tool input) may use `{result}` (the latest tool result),
    `{answer}` (the first AskUserQuestion answer in it) and `{cwd}` (the CLI's working
    directory, which file tools need because they only take absolute paths).
    """

    text: str | None = None
    thinking: str | None = None
    tool: str | None = None
    input: dict[str, Any] = {}
    repeat: int = 1  # text repeated this many times: large replies from a small prompt

    def __post_init__(self) -> None:
        if sum(v is not None for v in (self.text, self.thinking, self.tool)) != 1:
            raise ValueError("a block needs exactly one of text, thinking, tool")


class ScriptError(ValueError):
    """A prompt names a script that does not exist."""


class Script(msgspec.Struct, forbid_unknown_fields=True):
    """Each step is one model response; `chunk`/`delay_ms` pace the streamed deltas."""

    steps: list[list[ScriptBlock]]
    chunk: int = 8
    delay_ms: int = 0

    def __post_init__(self) -> None:
        if self.chunk < 1 or self.delay_ms < 0:
            raise ValueError("chunk must be >= 1 and delay_ms >= 0")


# Reply blocks encode to exactly the API's content blocks (tagged by "type").
class Text(msgspec.Struct, tag_field="type", tag="text"):
    text: str


class Thinking(msgspec.Struct, tag_field="type", tag="thinking"):
    thinking: str
    signature: str


class ToolUse(msgspec.Struct, tag_field="type", tag="tool_use"):
    id: str
    name: str
    input: dict[str, Any]


Block = Text | Thinking | ToolUse


class Reply(msgspec.Struct):
    content: list[Block]
    stop_reason: str
    chunk: int = 8
    delay_ms: int = 0


class Message(msgspec.Struct):
    role: str
    content: str | list[dict[str, Any]]


class MessagesRequest(msgspec.Struct):
    """The fields of a /v1/messages body the script looks at; the rest is ignored."""

    model: str = "claude-scripted"
    messages: list[Message] = []
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] = []
    stream: bool = False
    output_config: dict[str, Any] | None = None


_LONG_TEXT = """\
Here is a longer answer, streamed slowly so there is time to interrupt it.

A gateway sits between browsers and agent sessions. Each browser tab opens a WebSocket, \
and the gateway relays every streamed event as soon as the model produces it. Because \
the model speaks in small deltas, the user sees the answer grow word by word instead of \
waiting for the whole message.

The heart of such a relay is a loop that reads from one side and writes to the other:

```python
async def relay(source, sink):
    async for event in source:
        await sink.send(event)
```

Back-pressure matters: if the browser is slow, events must queue somewhere bounded, \
and the gateway has to decide whether to buffer, drop, or disconnect. Interrupts matter \
too: a user who presses stop expects the stream to end at once, with the partial answer \
kept and the session still usable for the next prompt.

Finally, every turn ends with a result that carries usage and timing, so the gateway can \
account for cost and show the user how long the agent took. That is the end of this \
deliberately long reply."""

BUILTINS: dict[str, Script] = msgspec.convert(
    {
        "hello": {"steps": [[{"text": "Hello! I am the scripted model, streaming this greeting in small chunks."}]]},
        # `sh -c`: the CLI auto-approves a bare (read-only) `echo`; this demo should ask permission.
        "bash": {
            "steps": [
                [
                    {"text": "Let me run a command."},
                    {
                        "tool": "Bash",
                        "input": {"command": "sh -c 'echo hello-from-agent'", "description": "Print a greeting"},
                    },
                ],
                [{"text": "The command returned: {result}"}],
            ]
        },
        "ask": {
            "steps": [
                [
                    {"text": "I need you to pick one."},
                    {
                        "tool": "AskUserQuestion",
                        "input": {
                            "questions": [
                                {
                                    "question": "Which color?",
                                    "header": "Color",
                                    "options": [
                                        {"label": "Red", "description": "A warm color"},
                                        {"label": "Blue", "description": "A cool color"},
                                    ],
                                    "multiSelect": False,
                                }
                            ]
                        },
                    },
                ],
                [{"text": "You answered: {answer}"}],
            ]
        },
        "long": {"steps": [[{"text": _LONG_TEXT}]], "chunk": 8, "delay_ms": 20},
        "slowbash": {
            "steps": [
                [
                    {"text": "Starting a slow command."},
                    {"tool": "Bash", "input": {"command": "sleep 5; echo done", "description": "Wait five seconds"}},
                ],
                [{"text": "The slow command returned: {result}"}],
            ]
        },
        "write": {
            "steps": [
                [
                    {"text": "I will write a notes file."},
                    {
                        "tool": "Write",
                        "input": {"file_path": "{cwd}/notes.txt", "content": "Notes from the scripted model.\n"},
                    },
                ],
                [{"text": "Wrote notes.txt. The tool said: {result}"}],
            ]
        },
    },
    dict[str, Script],
)

FINISHED = "(script finished)"
# The CLI's /compact request contains this; without <summary> tags in the reply it asks again.
_COMPACT_MARKER = "detailed summary of the conversation"
_COMPACT = Script(
    [[ScriptBlock(text="<analysis>A scripted conversation.</analysis>\n<summary>Scripted turns so far.</summary>")]]
)
_DEMO_WORDS = {"bash": ("run", "command"), "ask": ("ask", "question", "choose"), "long": ("long", "essay", "story")}
_SCRIPT_RE = re.compile(r"^SCRIPT:(.*)", re.MULTILINE | re.DOTALL)
_ANSWER_RE = re.compile(r'"[^"]*"="([^"]*)"')
_CWD_RE = re.compile(r"Primary working directory: (.+)")
_REMINDER = "<system-reminder>"
# Blocks the CLI injects into user messages (context and local-command records), never prompts.
_INJECTED = (_REMINDER, "<local-command-", "<command-name>")
_REMINDER_BLOCK_RE = re.compile(r"<system-reminder>.*?</system-reminder>", re.DOTALL)


def expected_texts(name: str, **values: str) -> list[str]:
    """The text of each step of built-in `name`, with `{placeholders}` filled from `values`."""
    return ["".join(_fill(b.text, values) for b in step if b.text is not None) for step in BUILTINS[name].steps]


def plan_reply(req: MessagesRequest) -> Reply:
    """Decide the whole next response for this request."""
    if (fmt := (req.output_config or {}).get("format")) and fmt.get("type") == "json_schema":
        # Side requests (e.g. session titles) want JSON matching a schema, not a script step.
        return Reply([Text(msgspec.json.encode(_example(fmt.get("schema", {}))).decode())], "end_turn")
    start = _last_prompt_index(req.messages)
    prompt = _prompt_blocks(req.messages[start]) if start >= 0 else []
    try:
        script = _script_for(prompt)
    except (msgspec.DecodeError, ScriptError) as exc:
        return Reply([Text(f"Script error: {exc}")], "end_turn")
    step = sum(m.role == "assistant" for m in req.messages[start + 1 :])
    if step >= len(script.steps):
        return Reply([Text(FINISHED)], "end_turn")
    result = _latest_tool_result(req.messages[start + 1 :])
    answer = m.group(1) if (m := _ANSWER_RE.search(result)) else result
    values = {"result": result, "answer": answer, "cwd": _cwd(req)}
    content = [_render(b, values) for b in script.steps[step] if b.tool is None or req.tools]
    stop = "tool_use" if content and isinstance(content[-1], ToolUse) else "end_turn"
    return Reply(content or [Text(FINISHED)], stop, script.chunk, script.delay_ms)


def _script_for(prompt: list[str]) -> Script:
    """The script a prompt selects; a `SCRIPT:` spec runs to the end of its text block."""
    for text in prompt:
        if m := _SCRIPT_RE.search(text):
            spec = m.group(1).strip()
            if spec.startswith("{"):
                return msgspec.json.decode(spec, type=Script)
            name = spec.split(maxsplit=1)[0] if spec else ""
            if name not in BUILTINS:
                raise ScriptError(f"unknown script {name!r}; built-ins: {', '.join(BUILTINS)}")
            return BUILTINS[name]
    joined = "\n".join(prompt)
    if _COMPACT_MARKER in joined:
        return _COMPACT
    words = set(re.findall(r"[a-z]+", joined.lower()))
    for name, triggers in _DEMO_WORDS.items():
        if words.intersection(triggers):
            return BUILTINS[name]
    return Script([[ScriptBlock(text=_demo_text(joined))]], chunk=4, delay_ms=5)


def _demo_text(prompt: str) -> str:
    quoted = prompt if len(prompt) <= 200 else prompt[:200] + "…"
    triggers = "; ".join(f"{' / '.join(ws)} → the `{name}` demo" for name, ws in _DEMO_WORDS.items())
    return (
        f'You said: "{quoted}"\n\n'
        "I am the offline demo model: my replies are scripted, no real model is involved. "
        f"Words that trigger a demo: {triggers}. "
        "Or send a line `SCRIPT:<name>` (built-ins: "
        f"{', '.join(BUILTINS)}) or `SCRIPT:{{\"steps\": [[{{\"text\": \"...\"}}]]}}`."
    )


def _example(schema: dict[str, Any]) -> Any:
    """A minimal value satisfying a simple JSON schema (such as the CLI's `{"title": string}`)."""
    if "enum" in schema:
        return schema["enum"][0]
    match schema.get("type"):
        case "object":
            return {k: _example(v) for k, v in schema.get("properties", {}).items()}
        case "array":
            return []
        case "integer" | "number":
            return 0
        case "boolean":
            return False
        case "null":
            return None
        case _:
            return "Scripted session"


def _texts(content: str | list[dict[str, Any]]) -> list[str]:
    if isinstance(content, str):
        return [content]
    return [b["text"] for b in content if b.get("type") == "text"]


def _prompt_blocks(msg: Message) -> list[str]:
    """The user's own text blocks, without the CLI's injected <system-reminder> blocks."""
    return [t.strip() for t in _texts(msg.content) if t.strip() and not t.lstrip().startswith(_INJECTED)]


def _last_prompt_index(messages: list[Message]) -> int:
    """Index of the last user message with the user's own text; a bare tool result is no prompt.

    A prompt sent after an interrupt mid-tool arrives in the same message as the tool result.
    """
    prompts = [i for i, m in enumerate(messages) if m.role == "user" and _prompt_blocks(m)]
    return prompts[-1] if prompts else -1


def _latest_tool_result(messages: list[Message]) -> str:
    for m in reversed(messages):
        if isinstance(m.content, list):
            for b in reversed(m.content):
                if b.get("type") == "tool_result":
                    texts = _texts(b.get("content", ""))
                    return _REMINDER_BLOCK_RE.sub("", "\n".join(texts)).strip()
    return ""


def _cwd(req: MessagesRequest) -> str:
    texts = _texts(req.system or []) + [t for m in req.messages for t in _texts(m.content)]
    return next((m.group(1).strip() for t in texts if (m := _CWD_RE.search(t))), ".")


def _fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        for key, v in values.items():
            value = value.replace("{" + key + "}", v)
        return value
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, values) for v in value]
    return value


def _render(block: ScriptBlock, values: dict[str, str]) -> Block:
    if block.text is not None:
        return Text(_fill(block.text, values) * block.repeat)
    if block.thinking is not None:
        return Thinking(_fill(block.thinking, values), signature="sig_" + secrets.token_hex(16))
    return ToolUse("toolu_" + secrets.token_hex(12), block.tool or "", _fill(block.input, values))
