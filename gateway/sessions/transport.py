"""The SDK's subprocess transport with a cheaper read side: same CLI, same messages, fewer steps per line.

`ChunkedCLITransport` is the SDK's `SubprocessCLITransport`: it spawns, writes, reads stderr and
closes exactly as the SDK does (same command, environment, cwd, launcher, terminate sequence). Only
`read_messages` differs. The SDK's reads stdout through a text stream of 64 KiB reads and
`json.loads` each line; this one reads bytes in reads of up to `READ_BYTES` (whatever the pipe
holds), splits them on newlines in one pass, and decodes each line with msgspec, falling back to the
SDK's own `_parse_stdout_line` for any line msgspec can't take (lone surrogates, NaN, non-JSON
noise), so what it yields, and every error it raises, is what the SDK's reader would: the same
dicts in the same order, `CLIJSONDecodeError` past `max_buffer_size` characters or on a corrupt line,
`ProcessError` on a non-zero exit, a truncated last line dropped.

Stream events can skip the SDK's query layer. It hands every message to `receive_messages` through
an anyio memory stream: a `sleep(0)` on each side, an event and a task switch per message, more than
all the gateway's own work on a token. Given `deliver`, the transport parses a `stream_event` with
the SDK's parser and hands it to `deliver` itself, in the query layer's reading task, unless
messages it did hand to the query layer may not have reached the reader yet: then it hands that
event to the query layer too and reads no further until the reader reports (`delivered`) that it
got it, so nothing is in flight there any more (one without a uuid can't be waited for: it goes
that way, and so do the stream events after it until one can). So the reader gets every message
once, in the CLI's order. The query layer still sees every control message, every other message, and the first stream
event after any of them: what it does on a stream event (a turn is under way: reopen the run, clear
the run-end ceiling) it has done by then, and would only do again on the ones it doesn't see.

Stream events can also skip the reading task itself. A paced CLI writes one line at a time, and
each line woke the reading task (the pipe's data put in asyncio's stream reader, its waiter's
future set, the task scheduled and stepped, the anyio and generator frames resumed), more than the
event's own parsing. While that task waits with nothing pending (no partial line, nothing routed to
the query layer, the stream reader empty), the data the pipe delivers is read in the pipe's own
callback (`_feed`): complete lines that are stream events go to `deliver` there, up to
`TURN_EVENTS`; from the first line that is anything else (or a partial line, or the rest past that
bound) on, the data goes to the stream reader as before, so the reading task gets it, in order.
A failure in `deliver` is handed to the stream reader, so the reading task raises it as before.
"""

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import msgspec
from claude_agent_sdk import ClaudeAgentOptions, CLIConnectionError, CLIJSONDecodeError, ProcessError
from claude_agent_sdk._internal.message_parser import parse_message
from claude_agent_sdk._internal.transport.subprocess_cli import SubprocessCLITransport, _parse_stdout_line, logger
from claude_agent_sdk.types import Message, StreamEvent, _configure_can_use_tool

READ_BYTES = 1 << 20  # the most one read takes; a read returns what the pipe holds, so this only caps a backlog
# Stream events delivered in one go before the reader lets the loop run: a backlog of thousands of
# lines must not hold the loop (other sessions, attaches, the outbox's sends) for tens of ms.
TURN_EVENTS = 64

_decode = msgspec.json.Decoder().decode
# What the SDK's query layer consumes itself; it hands every other message to `receive_messages`.
QUERY_OWN = frozenset({"control_response", "control_request", "control_cancel_request", "transcript_mirror"})


async def _no_prompt() -> AsyncIterator[dict[str, Any]]:
    return
    yield {}  # an async generator that yields nothing: ClaudeSDKClient writes the prompts itself


def chunked_transport(options: ClaudeAgentOptions, deliver: Callable[[Message], None] | None = None) -> "ChunkedCLITransport | None":
    """The transport for `ClaudeSDKClient(options, transport=…)`, built from the options as the client
    builds its own (a custom transport gets the options as given, so the permission routing that
    `connect` applies to its own transport is applied here). `deliver`: where stream events go past
    the SDK's query layer (see the module's docstring).

    None (the SDK's own transport) when the conversation is resumed from a `session_store`: the SDK
    loads the store into a temporary config directory only for a transport it builds itself."""
    if options.session_store is not None and (options.resume or options.continue_conversation):
        return None
    return ChunkedCLITransport(_no_prompt(), _configure_can_use_tool(options), deliver)


def _line(line: bytes) -> dict[str, Any] | None:
    """One complete stdout line as the SDK's `_parse_stdout_line` reads it, through msgspec when it can."""
    if line[:1] == b"{":
        try:
            data = _decode(line)
        except msgspec.MsgspecError:
            pass
        else:
            if type(data) is dict:
                return data
    return _parse_stdout_line(line.decode())


def _stream_event(data: dict[str, Any]) -> StreamEvent:
    """The SDK parser's `StreamEvent` for a `stream_event` line, built without its dispatch over every
    message type (a third of its cost per event); a line missing a field goes to the parser, which
    raises its `MessageParseError`. `test_sdk_messages.py` checks both agree."""
    try:
        return StreamEvent(
            uuid=data["uuid"],
            session_id=data["session_id"],
            event=data["event"],
            parent_tool_use_id=data.get("parent_tool_use_id"),
            user_message_uuid=data.get("user_message_uuid"),
            user_message_uuids=data.get("user_message_uuids"),
        )
    except KeyError:
        return parse_message(data)  # type: ignore[return-value]  # raises


class ChunkedCLITransport(SubprocessCLITransport):
    def __init__(self, prompt: AsyncIterator[dict[str, Any]], options: ClaudeAgentOptions, deliver: Callable[[Message], None] | None = None) -> None:
        super().__init__(prompt, options)
        self._deliver = deliver
        self._routing = False  # a message handed to the query layer may not have reached the reader yet
        self._last_routed: str | None = None  # the stream event handed there last, by uuid
        self._arrived: asyncio.Future[None] | None = None  # set when the reader has it
        self._idle = False  # the reading task waits for data with nothing pending: the pipe's callback may deliver

    def read_messages(self) -> AsyncIterator[dict[str, Any]]:
        return self._read_chunked()

    def delivered(self, uuid: str | None) -> None:
        """The reader got this stream event from the query layer: if it is the one the transport waits
        for, nothing is in flight there any more, and stream events go to `deliver` again."""
        if uuid == self._last_routed and self._arrived is not None and not self._arrived.done():
            self._arrived.set_result(None)

    def _guard(self, data: bytes) -> None:
        """The SDK's bound on one message, in characters (bytes are only counted past it)."""
        if len(data) > self._max_buffer_size and (length := len(data.decode(errors="ignore"))) > self._max_buffer_size:
            raise CLIJSONDecodeError(
                f"JSON message exceeded maximum buffer size of {self._max_buffer_size} bytes",
                ValueError(f"Buffer size {length} exceeds limit {self._max_buffer_size}"),
            )

    async def close(self) -> None:
        self._idle = False  # the reading task may be cancelled but not yet run: deliver nothing more
        await super().close()

    def _read_in_callback(self, reader: asyncio.StreamReader) -> None:
        """Have the pipe's data for `reader` go through `_feed` first (see the module's docstring)."""
        feed_data = reader.feed_data

        def feed(data: bytes) -> None:
            if self._idle and not reader._buffer and reader.exception() is None:  # noqa: SLF001  # nothing unread before this
                try:
                    data = self._feed(data)
                except Exception as exc:  # noqa: BLE001  # the reading task raises it, as it would have
                    reader.set_exception(exc)
                    return
                if not data:
                    return
            feed_data(data)

        reader.feed_data = feed  # type: ignore[method-assign]

    def _feed(self, data: bytes) -> bytes:
        """Deliver the stream events `data` starts with; return the rest, from the first line that
        isn't one (or is partial, too long, or past `TURN_EVENTS`)."""
        deliver = self._deliver
        assert deliver is not None
        start, count, limit = 0, 0, self._max_buffer_size
        while count < TURN_EVENTS:
            end = data.find(b"\n", start)
            if end < 0 or end - start > limit:
                break
            line = data[start:end]
            if line.strip():
                try:
                    parsed = _line(line)
                except CLIJSONDecodeError:
                    break  # the reading task raises it, in its place
                if parsed is None or parsed.get("type") != "stream_event":
                    break
                deliver(_stream_event(parsed))
                count += 1
            start = end + 1
        return data[start:]

    async def _read_chunked(self) -> AsyncIterator[dict[str, Any]]:
        process = self._process
        if not process or not self._stdout_stream or process.stdout is None:
            raise CLIConnectionError("Not connected")
        stdout = process.stdout
        reader = getattr(stdout, "_stream", None)  # anyio's wrapper of asyncio's stream reader
        push = self._deliver is not None and isinstance(reader, asyncio.StreamReader)
        if push:
            self._read_in_callback(reader)
        limit = self._max_buffer_size
        deliver = self._deliver
        delivered = 0  # stream events delivered since the loop last ran
        pending: list[bytes] = []  # the line being received, in pieces, none with a newline
        pending_len = 0
        try:
            while True:
                self._idle = push and not pending and not self._routing
                try:
                    chunk = await stdout.receive(READ_BYTES)
                except anyio.EndOfStream:
                    break
                finally:
                    self._idle = False
                if b"\n" not in chunk:
                    pending.append(chunk)
                    pending_len += len(chunk)
                    if pending_len > limit:
                        self._guard(b"".join(pending))
                    continue
                if pending:
                    pending.append(chunk)
                    chunk = b"".join(pending)
                lines = chunk.split(b"\n")
                tail = lines.pop()
                pending = [tail] if tail else []
                pending_len = len(tail)
                for line in lines:
                    if len(line) > limit:
                        self._guard(line)
                    data = _line(line)
                    if data is None:
                        continue
                    if deliver is not None:
                        kind = data.get("type")
                        if kind == "stream_event":
                            if not self._routing:
                                deliver(_stream_event(data))
                                delivered += 1
                                if delivered == TURN_EVENTS:
                                    delivered = 0
                                    await asyncio.sleep(0)
                                continue
                            uuid = data.get("uuid")
                            if uuid.__class__ is str:  # the event to wait for: the query layer's last in flight
                                self._last_routed, self._arrived = uuid, asyncio.get_running_loop().create_future()
                                delivered = 0
                                yield data
                                await self._arrived
                                self._routing, self._arrived = False, None
                                continue
                        elif kind not in QUERY_OWN:
                            self._routing = True
                    self._check_claude_version(data)
                    delivered = 0  # the query layer's send lets the loop run
                    yield data
                if pending_len > limit:
                    self._guard(tail)
        except anyio.ClosedResourceError:
            pass
        except GeneratorExit:
            return  # the consumer is gone: no await here (see the SDK's reader)
        finally:
            self._idle = False
            if push:
                del reader.feed_data  # the stream reader's own again: no cycle through this transport left

        # The CLI ends every message with a newline: a tail is a producer that omits the last one
        # (yield it) or one cut off mid-write (drop it).
        tail = b"".join(pending).decode(errors="ignore")
        try:
            data = _parse_stdout_line(tail)
        except CLIJSONDecodeError:
            logger.debug("Dropping truncated JSON at end of CLI stdout: %s", tail[:200])
            data = None
        if data is not None:
            yield data

        try:
            returncode = await process.wait()
        except Exception:
            returncode = -1
        if returncode is not None and returncode != 0:
            self._exit_error = ProcessError(
                f"Command failed with exit code {returncode}", exit_code=returncode, stderr="Check stderr output for details"
            )
            raise self._exit_error
