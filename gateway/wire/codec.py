"""Decoding client frames with errors a client can act on, and encoding server frames.

One rule per error: a message that doesn't parse as JSON (nested too deeply, anywhere, included)
is `bad_json`; valid JSON that isn't a valid frame is `bad_frame` or `unknown_type`. An error
carries the frame's `id` only when the id itself is valid (a string of 1-128 characters).

Decoding is strict JSON-to-type, with one widening JSON Schema itself makes: a whole number written
as a float (`3.0`, `3e0`) is an integer. Nothing else is coerced (`"3"` stays refused).
"""

import functools
from typing import Any, Generic, TypeVar

import msgspec

from gateway.wire.client import FRAME_ID_MAX, AnyClientFrame, ClientFrame
from gateway.wire.errors import ErrorCode, GatewayError
from gateway.wire.server import Error, ServerFrame

T = TypeVar("T")
_loose = msgspec.json.Decoder()


class WireDecoder(Generic[T]):
    """Decode JSON into `T` strictly, except that integer fields take whole numbers written as floats.

    msgspec's lax mode accepts those, but also strings for numbers and booleans. So a strict failure
    is checked again with every whole float made an int: if that passes, the lax result is the value
    (free-form fields such as tool input keep their floats); if not, its error is the one to report.
    """

    def __init__(self, kind: Any) -> None:
        self._strict: msgspec.json.Decoder[T] = msgspec.json.Decoder(kind)
        self._lax: msgspec.json.Decoder[T] = msgspec.json.Decoder(kind, strict=False)

    def decode(self, raw: bytes | str) -> T:
        try:
            return self._strict.decode(raw)
        except msgspec.ValidationError:
            self._strict.decode(encode(_whole_floats_as_ints(_loose.decode(raw))))
            return self._lax.decode(raw)


def _whole_floats_as_ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_floats_as_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_floats_as_ints(v) for v in value]
    return value


@functools.cache
def wire_decoder(kind: Any) -> WireDecoder[Any]:
    return WireDecoder(kind)


_decoder: WireDecoder[ClientFrame] = wire_decoder(AnyClientFrame)


class _IdOnly(msgspec.Struct):
    id: Any = None


_id_only = msgspec.json.Decoder(_IdOnly)
encode = msgspec.json.Encoder().encode
# msgspec raises RecursionError on JSON nested about 1,000 deep (a 2 KB frame): bad JSON to us.
TOO_DEEP = "not valid JSON: nested too deeply"


class FrameError(GatewayError):
    """A frame that can't be executed; `frame_id` is its id when one could be read."""

    def __init__(self, code: ErrorCode, message: str, frame_id: str | None) -> None:
        super().__init__(code, message)
        self.frame_id = frame_id


def decode_client_frame(raw: bytes | str) -> ClientFrame:
    try:
        return _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        # The typed decoder stops at the first wrong type; whether the rest parses decides bad_json.
        try:
            value = _loose.decode(raw)
        except RecursionError:
            raise FrameError(ErrorCode.BAD_JSON, TOO_DEEP, None) from None
        except (msgspec.DecodeError, UnicodeDecodeError) as decode_error:
            raise FrameError(ErrorCode.BAD_JSON, f"not valid JSON: {decode_error}", None) from None
        loose = value if isinstance(value, dict) else {}
        frame_id = valid_id(loose.get("id"))
        text = str(exc)
        if "`$.type`" in text or text == "Object missing required field `type`":  # the frame's, not a block's
            return_code = ErrorCode.UNKNOWN_TYPE if "type" in loose else ErrorCode.BAD_FRAME
            raise FrameError(return_code, _explain_type(loose, text), frame_id) from None
        raise FrameError(ErrorCode.BAD_FRAME, text, frame_id) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise FrameError(ErrorCode.BAD_JSON, f"not valid JSON: {exc}", None) from None
    except RecursionError:
        raise FrameError(ErrorCode.BAD_JSON, TOO_DEEP, None) from None


def valid_id(value: object) -> str | None:
    """`value` when it is a valid frame id, else None: an error never echoes an invalid id."""
    return value if isinstance(value, str) and 0 < len(value) <= FRAME_ID_MAX else None


def frame_id_of(raw: bytes | str) -> str | None:
    """The valid `id` of a frame we won't execute (e.g. too large), skipping everything else cheaply."""
    try:
        return valid_id(_id_only.decode(raw).id)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        return None


def _explain_type(loose: dict[str, Any], text: str) -> str:
    if "type" not in loose:
        return "frame has no `type`" if loose else f"a frame is a JSON object with a `type`: {text}"
    return f"unknown frame type {loose['type']!r}"


def error_frame(exc: GatewayError, frame_id: str | None = None) -> bytes:
    frame_id = getattr(exc, "frame_id", None) or frame_id
    return encode(Error(id=frame_id, code=str(exc.code), message=exc.message, retry_after_ms=exc.retry_after_ms))


def frame_bytes(frame: ServerFrame) -> bytes:
    return encode(frame)
