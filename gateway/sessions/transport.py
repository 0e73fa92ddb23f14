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

The SDK's query layer still routes each message and its parser still builds the message objects.
"""

from collections.abc import AsyncIterator
from typing import Any

import anyio
import msgspec
from claude_agent_sdk import ClaudeAgentOptions, CLIConnectionError, CLIJSONDecodeError, ProcessError
from claude_agent_sdk._internal.transport.subprocess_cli import SubprocessCLITransport, _parse_stdout_line, logger
from claude_agent_sdk.types import _configure_can_use_tool

READ_BYTES = 1 << 20  # the most one read takes; a read returns what the pipe holds, so this only caps a backlog

_decode = msgspec.json.Decoder().decode


async def _no_prompt() -> AsyncIterator[dict[str, Any]]:
    return
    yield {}  # an async generator that yields nothing: ClaudeSDKClient writes the prompts itself


def chunked_transport(options: ClaudeAgentOptions) -> "ChunkedCLITransport":
    """The transport for `ClaudeSDKClient(options, transport=…)`, built from the options as the client
    builds its own (a custom transport gets the options as given, so the permission routing that
    `connect` applies to its own transport is applied here)."""
    return ChunkedCLITransport(_no_prompt(), _configure_can_use_tool(options))


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


class ChunkedCLITransport(SubprocessCLITransport):
    def read_messages(self) -> AsyncIterator[dict[str, Any]]:
        return self._read_chunked()

    def _guard(self, data: bytes) -> None:
        """The SDK's bound on one message, in characters (bytes are only counted past it)."""
        if len(data) > self._max_buffer_size and (length := len(data.decode(errors="ignore"))) > self._max_buffer_size:
            raise CLIJSONDecodeError(
                f"JSON message exceeded maximum buffer size of {self._max_buffer_size} bytes",
                ValueError(f"Buffer size {length} exceeds limit {self._max_buffer_size}"),
            )

    async def _read_chunked(self) -> AsyncIterator[dict[str, Any]]:
        process = self._process
        if not process or not self._stdout_stream or process.stdout is None:
            raise CLIConnectionError("Not connected")
        stdout = process.stdout
        limit = self._max_buffer_size
        pending: list[bytes] = []  # the line being received, in pieces, none with a newline
        pending_len = 0
        try:
            while True:
                try:
                    chunk = await stdout.receive(READ_BYTES)
                except anyio.EndOfStream:
                    break
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
                    if data is not None:
                        self._check_claude_version(data)
                        yield data
                if pending_len > limit:
                    self._guard(tail)
        except anyio.ClosedResourceError:
            pass
        except GeneratorExit:
            return  # the consumer is gone: no await here (see the SDK's reader)

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
