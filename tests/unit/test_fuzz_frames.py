"""The fuzz test's generator and oracle (tests/support/frames.py) are faithful to the contract:
unmutated frames are valid against protocol/schema.json, and the id the fuzz test expects each
answer to carry is the one the gateway's decoder reads."""

import json

import jsonschema
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.wire.codec import FrameError, decode_client_frame, frame_id_of
from gateway.wire.errors import ErrorCode
from tests.integration.test_fuzz import HINTS, MAX_FRAME_BYTES, WEIGHTS
from tests.support.frames import SCHEMA, client_frames, expected_id, from_schema, messages

VALIDATOR = jsonschema.Draft202012Validator({"$defs": SCHEMA["$defs"], "$ref": "#/$defs/ClientFrame"})


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(client_frames(WEIGHTS | {"close": 1}))
def test_drawn_frames_are_valid_and_read(frame: dict) -> None:
    """Valid against the schema; the gateway decodes them, or refuses one for a rule the schema can't
    say (an option for the other decision) with `bad_frame` under the frame's id."""
    VALIDATOR.validate(frame)
    try:
        read = decode_client_frame(json.dumps(frame)).id
    except FrameError as exc:
        assert exc.code == ErrorCode.BAD_FRAME and frame["type"] == "permission_response", exc
        read = exc.frame_id
    assert read == frame["id"]


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(messages(client_frames(WEIGHTS), HINTS, MAX_FRAME_BYTES))
@example(b'{"type": "ping", "id": "a", "x": "\xed\xa0\x80"}')  # an encoded surrogate: not UTF-8
@example(b'\xef\xbb\xbf{"type": "ping", "id": "a"}')  # a byte-order mark
@example('{"type": "ping", "id": "a", "x": NaN}')
@example('{"type": "ping", "id": "a", "id": "b"}')  # the last of repeated keys
@example(json.dumps({"type": "ping", "id": "a", "x": "h" * MAX_FRAME_BYTES}))
def test_the_expected_id_is_the_one_the_gateway_reads(message: bytes | str) -> None:
    if len(message) > MAX_FRAME_BYTES:  # refused unread as frame_too_large, with the id it can find
        read = frame_id_of(message)
    else:
        try:
            read = decode_client_frame(message).id
        except FrameError as exc:
            read = exc.frame_id
    assert read == expected_id(message)


def test_a_keyword_it_cannot_honour_is_refused() -> None:
    with pytest.raises(ValueError, match="pattern"):
        from_schema({"type": "string", "pattern": "^a+$"})


@given(st.data())
def test_steered_frames_reach_the_session(data: st.DataObject) -> None:
    """Some frames carry what acts on the session: scripted prompts (string and blocks), live requests, allowed models."""
    frame = data.draw(client_frames({"query": 1}))
    HINTS.steer(data.draw, frame)
    VALIDATOR.validate(frame)
    text = frame["prompt"] if isinstance(frame["prompt"], str) else frame["prompt"][0]["text"]
    assert text in HINTS.prompts
