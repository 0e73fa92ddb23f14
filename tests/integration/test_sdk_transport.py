"""The gateway's CLI transport reads what the SDK's own would, message for message and error for error.

Each case runs one small CLI script under both transports, as real subprocesses, and compares what
`read_messages` yields and raises. The scripts write stdout in awkward pieces: lines split across
writes, many lines in one write, a multi-byte character split between writes, noise lines, CRLF,
a lone surrogate msgspec refuses, a last line without its newline.
"""

import asyncio
import json
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk import ClaudeAgentOptions, CLIJSONDecodeError, ProcessError, ResultMessage, StreamEvent
from claude_agent_sdk._internal.transport.subprocess_cli import SubprocessCLITransport
from claude_agent_sdk.types import _configure_can_use_tool

from bench.serve import STANDIN_CLI
from gateway.sessions.runner import SdkRunner
from gateway.sessions.transport import ChunkedCLITransport, chunked_transport

BIG = "é" * 70_000  # 140,000 bytes, 70,000 characters: over a 100,000-byte bound, under a 100,000-character one


def _script(tmp_path: Path, body: str) -> str:
    """A CLI executable that writes `body`'s pieces to stdout (flushing after each), then exits."""
    path = tmp_path / "cli.py"
    path.write_text(f"#!{sys.executable}\nimport os, sys, time\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def _writes(pieces: list[bytes], exit_code: int = 0) -> str:
    return f"for piece in {pieces!r}:\n    os.write(1, piece)\n    time.sleep(0.01)\nsys.exit({exit_code})"


async def _read(transport: SubprocessCLITransport) -> tuple[list[dict[str, Any]], BaseException | None]:
    messages: list[dict[str, Any]] = []
    error: BaseException | None = None
    await transport.connect()
    try:
        async for message in transport.read_messages():
            messages.append(message)
    except Exception as exc:
        error = exc
    finally:
        await transport.close()
    return messages, error


async def _both(tmp_path: Path, body: str, **options: Any) -> tuple[tuple[list[dict[str, Any]], BaseException | None], ...]:
    opts = ClaudeAgentOptions(cli_path=_script(tmp_path, body), cwd=str(tmp_path), **options)
    ours = await _read(chunked_transport(opts))
    theirs = await _read(SubprocessCLITransport("", opts))
    return ours, theirs


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode() + b"\n"


async def test_same_messages_from_awkward_writes(tmp_path: Path) -> None:
    one, two, three = _line({"type": "a", "n": 1}), _line({"type": "b", "text": "snow ☃ and 😀"}), _line({"type": "c", "big": BIG})
    pieces = [
        one[:5], one[5:] + two[:-9],  # a line split across writes, then one ending mid-way through a multi-byte character
        two[-9:] + b"\n[SandboxDebug] not json\n  \n" + _line({"type": "d"})[:-1] + b"\r\n",  # noise, blank, CRLF
        b'{"type": "e", "s": "\\ud800 lone", "f": 1.5e3, "i": 123456789012345678901234567890}\n',  # msgspec refuses these
        three + _line({"type": "f"}) * 500,  # one large write, many lines
        b'{"type": "last"}',  # no newline at the end
    ]
    ours, theirs = await _both(tmp_path, _writes(pieces))
    assert ours == theirs
    messages, error = ours
    assert error is None
    assert [m["type"] for m in messages] == ["a", "b", "d", "e", "c"] + ["f"] * 500 + ["last"]
    assert messages[1]["text"] == "snow ☃ and 😀" and messages[3]["s"] == "\ud800 lone" and messages[4]["big"] == BIG


async def test_truncated_last_line_is_dropped_and_exit_code_raised(tmp_path: Path) -> None:
    ours, theirs = await _both(tmp_path, _writes([_line({"type": "a"}), b'{"type": "cut'], exit_code=3))
    assert ours[0] == theirs[0] == [{"type": "a"}]
    assert isinstance(ours[1], ProcessError) and isinstance(theirs[1], ProcessError)
    assert ours[1].exit_code == theirs[1].exit_code == 3


@pytest.mark.parametrize(
    "pieces",
    [
        [_line({"type": "ok"}), b'{"type": "x", "big": "' + b"x" * 150_000 + b'"}\n'],  # a complete line over the bound
        [_line({"type": "ok"}), b'{"type": "x", "big": "' + b"x" * 150_000],  # a line still arriving, over the bound
        [_line({"type": "ok"}), b'{"type": "x" oops}\n'],  # corrupt JSON
    ],
    ids=["complete", "partial", "corrupt"],
)
async def test_same_decode_errors(tmp_path: Path, pieces: list[bytes]) -> None:
    ours, theirs = await _both(tmp_path, _writes(pieces), max_buffer_size=100_000)
    assert ours[0] == theirs[0] == [{"type": "ok"}]
    assert type(ours[1]) is type(theirs[1]) is CLIJSONDecodeError
    assert str(ours[1]) == str(theirs[1])


async def test_bound_counts_characters_not_bytes(tmp_path: Path) -> None:
    """140,000 bytes of `é` are 70,000 characters: under the SDK's bound of 100,000, so not an error."""
    ours, theirs = await _both(tmp_path, _writes([_line({"big": BIG})]), max_buffer_size=100_000)
    assert ours == theirs == ([{"big": BIG}], None)


async def test_stderr_lines_and_permission_routing(tmp_path: Path) -> None:
    """The rest is the SDK's: stderr lines reach the callback; with `can_use_tool` the CLI is told to ask over stdio."""

    async def allow(*_: Any) -> Any:
        raise AssertionError("not called")

    seen: list[str] = []
    body = "os.write(2, b'first\\nsecond\\n'); os.write(1, (' '.join(sys.argv[1:]) + '\\n').encode()); time.sleep(0.1)"
    opts = ClaudeAgentOptions(cli_path=_script(tmp_path, body), cwd=str(tmp_path), stderr=seen.append, can_use_tool=allow)
    transport = chunked_transport(opts)
    assert isinstance(transport, ChunkedCLITransport)
    command = transport._build_command()
    assert command == SubprocessCLITransport("", _configure_can_use_tool(opts))._build_command()  # what ClaudeSDKClient would run
    assert command[command.index("--permission-prompt-tool") + 1] == "stdio"
    messages, error = await _read(transport)
    assert messages == [] and error is None  # the argv line is noise, not JSON
    assert seen == ["first", "second"]


class _Hooks:
    """Records what a runner hands the session, and on which task (the query layer's reader, or the runner's)."""

    def __init__(self) -> None:
        self.messages: list[tuple[Any, str]] = []
        self.result = asyncio.Event()

    def on_message(self, message: Any) -> None:
        task = asyncio.current_task()
        self.messages.append((message, task.get_name() if task else ""))
        if isinstance(message, ResultMessage):
            self.result.set()

    def on_exit(self, runner: Any, error: BaseException | None) -> None:
        raise AssertionError(f"the CLI exited: {error!r}")

    async def can_use_tool(self, *_: Any) -> Any:
        raise AssertionError("not called")


@pytest.mark.parametrize("rate", [0, 2000], ids=["burst", "paced"])
async def test_runner_gets_every_message_once_in_order_by_both_ways(tmp_path: Path, rate: int) -> None:
    """Stream events past the SDK's query layer (from its reading task or the pipe's callback), the rest
    through it: the session still gets the CLI's messages in the CLI's order. The stand-in CLI
    (bench/standin_cli.py) writes 1,200 deltas with an assistant message after every 500, each delta
    stamped with the clock when written; in a burst many lines arrive in one read, so stream events
    follow routed messages while those are in flight."""
    hooks = _Hooks()
    options = ClaudeAgentOptions(cli_path=str(STANDIN_CLI), cwd=str(tmp_path))
    runner = SdkRunner(options, hooks)
    await runner.start()
    try:
        prompt = json.dumps({"events": 1200, "rate": rate})
        await runner.query({"type": "user", "message": {"role": "user", "content": prompt}, "parent_tool_use_id": None})
        await asyncio.wait_for(hooks.result.wait(), 60)
    finally:
        await runner.stop()
    kinds = [m.event["type"] if isinstance(m, StreamEvent) else type(m).__name__ for m, _ in hooks.messages]
    block = ["message_start", "content_block_start"], ["content_block_stop", "message_delta", "message_stop", "AssistantMessage"]
    expected = ["SystemMessage"]
    for count in (500, 500, 200):
        expected += block[0] + ["content_block_delta"] * count + block[1]
    assert kinds == expected + ["ResultMessage"]
    stamps = [int(m.event["delta"]["text"].rpartition("@")[2]) for m, _ in hooks.messages if isinstance(m, StreamEvent) and "text" in m.event.get("delta", {})]
    assert len(stamps) == 1200 and stamps == sorted(stamps)  # written in this order, received in it
    tasks = {task for m, task in hooks.messages if isinstance(m, StreamEvent)}
    # The query layer (the runner's task) was taken, and paced lines come through the pipe's callback (no
    # task); the transport's reading task (the third name) delivers those it reads itself (a burst's).
    assert "sdk-runner" in tasks and len(tasks) <= 3
    if rate:
        assert "" in tasks
    assert {task for m, task in hooks.messages if not isinstance(m, StreamEvent)} == {"sdk-runner"}  # the rest through the SDK


def _delta(n: int) -> bytes:
    event = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": str(n)}}
    return _line({"type": "stream_event", "uuid": f"u{n}", "session_id": "s", "event": event, "parent_tool_use_id": None})


async def _read_delivering(tmp_path: Path, pieces: list[bytes], deliver: Any) -> tuple[list[Any], BaseException | None]:
    """`read_messages` with `deliver` set, acknowledging routed stream events as the runner does."""
    opts = ClaudeAgentOptions(cli_path=_script(tmp_path, _writes(pieces)), cwd=str(tmp_path), max_buffer_size=100_000)
    transport = chunked_transport(opts, deliver)
    assert transport is not None
    yielded: list[Any] = []
    error: BaseException | None = None
    await transport.connect()
    assert transport._process is not None and transport._process.stdout is not None
    reader = transport._process.stdout._stream  # type: ignore[attr-defined]
    try:
        async for message in transport.read_messages():
            yielded.append(message)
            if message["type"] == "stream_event":
                transport.delivered(message["uuid"])
    except Exception as exc:
        error = exc
    finally:
        await transport.close()
    assert "feed_data" not in vars(reader)  # the reader is its own again: no cycle through the transport
    return yielded, error


@pytest.mark.parametrize("bad", [b'{"type": "x" oops}\n', b'{"type": "x", "big": "' + b"x" * 150_000 + b'"}\n'], ids=["corrupt", "over the bound"])
async def test_stream_events_read_in_the_pipes_callback_keep_their_place_before_an_error(tmp_path: Path, bad: bytes) -> None:
    """Stream events that come alone are delivered from the pipe's callback; a message that isn't one
    goes through the reading task, and so do the events behind it until it is through; a bad line
    raises in its place, after everything before it."""
    delivered: list[StreamEvent] = []
    pieces = [_delta(1), _delta(2) + _delta(3), _line({"type": "x"}) + _delta(4), _delta(5), bad]
    yielded, error = await _read_delivering(tmp_path, pieces, delivered.append)
    assert [m["type"] for m in yielded] == ["x", "stream_event"]  # 4, routed behind x
    assert [m.event["delta"]["text"] for m in delivered] == ["1", "2", "3", "5"]
    assert type(error) is CLIJSONDecodeError


async def test_a_failure_delivering_from_the_pipes_callback_is_raised_by_the_reader(tmp_path: Path) -> None:
    seen: list[str] = []

    def deliver(message: StreamEvent) -> None:
        seen.append(message.event["delta"]["text"])
        if len(seen) == 2:
            raise RuntimeError("the session failed")

    yielded, error = await _read_delivering(tmp_path, [_delta(1), _delta(2), _delta(3)], deliver)
    assert seen == ["1", "2"] and yielded == []
    assert isinstance(error, RuntimeError) and str(error) == "the session failed"
