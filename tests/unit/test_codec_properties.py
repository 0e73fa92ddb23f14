"""Property tests for frame decoding: any input yields a frame or a documented error, never a crash."""

import json

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.wire.client import AnyClientFrame
from gateway.wire.codec import FrameError, decode_client_frame, frame_id_of
from gateway.wire.errors import ErrorCode

FRAME_ERRORS = {ErrorCode.BAD_JSON, ErrorCode.BAD_FRAME, ErrorCode.UNKNOWN_TYPE}
TYPES = ["open", "attach", "query", "interrupt", "permission_response", "question_response", "set_model",
         "set_permission_mode", "reset_conversation", "close", "ping", "bogus"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
frame_like = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES)},
    optional={
        "id": st.one_of(st.text(max_size=140), st.integers()),
        "prompt": json_values,
        "session_id": json_values,
        "after": json_values,
        "request_id": json_values,
        "decision": st.sampled_from(["allow", "deny", "maybe"]),
        "answers": json_values,
        "mode": st.sampled_from(["soft", "hard", "default", "plan", "bypassPermissions", "x"]),
        "model": json_values,
        "extra": json_values,
    },
)


def check(raw: bytes | str) -> None:
    try:
        frame = decode_client_frame(raw)
    except FrameError as exc:
        assert exc.code in FRAME_ERRORS and exc.message
        assert exc.frame_id is None or isinstance(exc.frame_id, str)
        return
    # Whatever decodes re-encodes to a frame that decodes to the same value.
    assert msgspec.json.decode(msgspec.json.encode(frame), type=AnyClientFrame) == frame


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes(raw: bytes) -> None:
    check(raw)


@settings(max_examples=500, deadline=None)
@given(json_values)
def test_arbitrary_json(value: object) -> None:
    check(json.dumps(value))


@settings(max_examples=1000, deadline=None)
@given(frame_like)
def test_frame_shaped_json(value: dict) -> None:  # type: ignore[type-arg]
    check(json.dumps(value))


@given(st.text(min_size=1, max_size=128))
def test_id_is_reported_back_on_bad_frames(frame_id: str) -> None:
    try:
        decode_client_frame(json.dumps({"type": "query", "id": frame_id}))
    except FrameError as exc:
        assert exc.frame_id == frame_id and exc.code == ErrorCode.BAD_FRAME


ids = st.one_of(st.none(), st.text(max_size=140), st.integers(), st.lists(st.integers(), max_size=2))


@settings(max_examples=300, deadline=None)
@given(ids, st.sampled_from([{"type": "query"}, {"type": "bogus"}, {"prompt": "hi"}, {"type": "query", "prompt": 1}]))
def test_an_error_echoes_the_id_only_when_it_is_valid(frame_id: object, rest: dict) -> None:  # type: ignore[type-arg]
    """One rule for every error path: a string id of 1-128 characters comes back, nothing else does."""
    raw = json.dumps({**rest, "id": frame_id})
    valid = frame_id if isinstance(frame_id, str) and 1 <= len(frame_id) <= 128 else None
    try:
        decode_client_frame(raw)
    except FrameError as exc:
        assert exc.frame_id == valid
    assert frame_id_of(raw) == valid  # the oversized-frame path


DEEP = 1800


@pytest.mark.parametrize(
    "raw",
    [
        "[" * DEEP + "]" * DEEP,  # a top-level array
        '{"type": "query", "id": "q1", "prompt": ' + "[" * DEEP + "]" * DEEP + "}",  # a prompt of the wrong type
        '{"type": "query", "id": "q1", "prompt": [{"type": "text", "x": ' + "[" * DEEP + "]" * DEEP + "}]}",  # inside an object
        '{"type": "bogus", "id": "q1", "x": ' + "[" * DEEP + "]" * DEEP + "}",
        '{"type": "query", "id": "q1", "prompt": 42, oops}',  # invalid JSON after a type error
    ],
    ids=["top-level-array", "prompt", "in-object", "unknown-type", "broken-tail"],
)
def test_json_that_does_not_parse_is_bad_json_wherever_it_breaks(raw: str) -> None:
    with pytest.raises(FrameError) as caught:
        decode_client_frame(raw)
    assert (caught.value.code, caught.value.frame_id) == (ErrorCode.BAD_JSON, None)
