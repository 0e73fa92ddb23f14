"""Client frames for fuzzing: drawn from protocol/schema.json's `ClientFrame`, then mutated.

`from_schema` covers the JSON Schema keywords msgspec writes for the wire types and refuses any
other, so a schema change it can't honour fails loudly instead of quietly narrowing the fuzz.
(hypothesis-jsonschema 0.23.1, the latest release, can't draw objects under the locked Hypothesis:
it calls `many.more()`, which Hypothesis has removed.)

Each message comes with the id its answer must carry (`expected_id`), read the way the gateway
reads it: a message that is not UTF-8 JSON, or is nested too deeply to parse, or is not an object,
or has no valid id (a string of 1-128 characters) is answered by an `error` without an id.
"""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

SCHEMA = json.loads((Path(__file__).parents[2] / "protocol" / "schema.json").read_text())
DEFS: dict[str, Any] = SCHEMA["$defs"]
ANNOTATIONS = {"title", "description", "default", "discriminator"}
Json = Any

json_values: st.SearchStrategy[Json] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Json]:
    """Values valid against `schema` (a JSON Schema as msgspec writes it, `$ref`s into DEFS)."""
    unknown = set(schema) - ANNOTATIONS - set(_KEYWORDS)
    if unknown:
        raise ValueError(f"from_schema can't honour {sorted(unknown)} in {schema}")
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        return st.deferred(lambda: from_schema(DEFS[name]))
    if "anyOf" in schema:
        return st.one_of([from_schema(branch) for branch in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        return _object(schema)
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {})), min_size=schema.get("minItems", 0), max_size=min(schema.get("maxItems", 5), 5))
    if kind == "string":
        return st.text(min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 40), 40))
    if kind == "integer":
        return st.integers(min_value=schema.get("minimum"), max_value=10**6)
    if kind == "number":
        low = schema.get("exclusiveMinimum")
        return st.floats(min_value=low, exclude_min=low is not None, max_value=1e6, allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind is None:
        return json_values
    raise ValueError(f"from_schema: unknown type {kind!r}")


_KEYWORDS = {
    "$ref", "anyOf", "enum", "type", "properties", "required", "additionalProperties",
    "items", "minItems", "maxItems", "minLength", "maxLength", "minimum", "exclusiveMinimum",
}


def _object(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Json]]:
    properties: dict[str, Any] = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    if not properties:  # a map (`answers`) or any object (`updated_input`, citations)
        values = json_values if extra is True else from_schema(extra)
        return st.dictionaries(st.text(max_size=20), values, max_size=4)
    required = set(schema.get("required", []))
    return st.fixed_dictionaries(
        {k: from_schema(v) for k, v in properties.items() if k in required},
        optional={k: from_schema(v) for k, v in properties.items() if k not in required},
    )


# ---- mutations -------------------------------------------------------------------------------

FRAME_TYPES = ["open", "attach", "ping", "query", "interrupt", "permission_response", "question_response", "set_model", "set_permission_mode", "reset_conversation"]


def client_frames(weights: dict[str, int]) -> st.SearchStrategy[dict[str, Json]]:
    """Valid client frames, as the schema describes them, of the types `weights` names, each
    type as often as its weight says (some frames are cheap to answer, some restart a CLI)."""
    by_type = {DEFS[name]["properties"]["type"]["enum"][0]: name for name in (r["$ref"].removeprefix("#/$defs/") for r in DEFS["ClientFrame"]["anyOf"])}
    strategies = {kind: from_schema(DEFS[by_type[kind]]) for kind in weights}
    return st.sampled_from([kind for kind, weight in weights.items() for _ in range(weight)]).flatmap(strategies.__getitem__)


LIVE_REQUEST = "@live-request@"  # the sender puts the id of a request pending at send time here
FRESH = "@fresh@"  # and a number it never used before here (in ids)
DEEP = "@deep@"  # where a deeply nested value goes, written out as text (json.dumps would recurse)
SHARED_IDS = ["dup-1", "dup-2", "dup-3"]  # ids every sender re-uses: duplicates, on one socket and across


@st.composite
def messages(draw: st.DrawFn, frames: st.SearchStrategy[dict[str, Json]], hints: "Hints", max_frame_bytes: int) -> bytes | str:
    """One WebSocket message: a valid frame most of the time, else one mutated in one way."""
    frame = draw(frames)
    if draw(st.integers(0, 3)):  # mostly fresh ids, so most frames run (a re-used id only gets the first ack back)
        frame["id"] = f"{frame['id'][:100]}{FRESH}"
    if draw(st.booleans()):
        hints.steer(draw, frame)
    mutation = draw(st.sampled_from(_MUTATIONS))
    return mutation(draw, frame, max_frame_bytes)


class Hints:
    """Values that reach past validation into the session: prompts the scripted model acts on
    (tools that ask permission, questions, long streams, as strings and as content blocks), the
    requests pending when the frame is sent, the profile's models, shared ids."""

    def __init__(self, prompts: list[str], models: list[str], questions: dict[str, list[str]]) -> None:
        self.prompts, self.models, self.questions = prompts, models, questions

    def steer(self, draw: st.DrawFn, frame: dict[str, Json]) -> None:
        kind = frame["type"]
        if kind == "query":
            text = draw(st.sampled_from(self.prompts))
            frame["prompt"] = draw(st.sampled_from([text, [{"type": "text", "text": text}], [{"type": "text", "text": text}, *frame["prompt"]] if isinstance(frame["prompt"], list) else text]))
        elif kind in ("permission_response", "question_response"):
            frame["request_id"] = LIVE_REQUEST
            if kind == "question_response" and draw(st.booleans()):
                question = draw(st.sampled_from(sorted(self.questions)))
                frame["answers"] = {question: draw(st.sampled_from(self.questions[question]) | st.text(max_size=10))}
        elif kind == "set_model":
            frame["model"] = draw(st.sampled_from(self.models))
        if draw(st.integers(0, 9)) == 0:
            frame["id"] = draw(st.sampled_from(SHARED_IDS))


def _valid(draw: st.DrawFn, frame: dict[str, Json], limit: int) -> bytes | str:
    return json.dumps(frame)


def _drop_field(draw: st.DrawFn, frame: dict[str, Json], limit: int) -> bytes | str:
    frame.pop(draw(st.sampled_from(sorted(frame))))
    return json.dumps(frame)


def _unknown_field(draw: st.DrawFn, frame: dict[str, Json], limit: int) -> bytes | str:
    frame[draw(st.sampled_from(["cwd", "env", "Prompt", "ids", "mcp_servers", ""]) | st.text(max_size=8))] = draw(json_values)
    return json.dumps(frame)


def _retype_field(draw: st.DrawFn, frame: dict[str, Json], limit: int) -> bytes | str:
    frame[draw(st.sampled_from(sorted(frame)))] = draw(json_values)
    return json.dumps(frame)


def _rename_type(draw: st.DrawFn, frame: dict[str, Json], limit: int) -> bytes | str:
    frame["type"] = draw(st.sampled_from([t for t in FRAME_TYPES if t != frame["type"]]) | st.text(max_size=12) | json_values)
    return json.dumps(frame)


def _odd_id(draw: st.DrawFn, frame: dict[str, Json], limit: int) -> bytes | str:
    odd = draw(st.sampled_from([None, "", 7, "x" * 128, "y" * 129, ["a"], {"id": "a"}, "é" * 128, "é" * 129]))
    if odd is None:
        frame.pop("id")
    else:
        frame["id"] = odd
    return json.dumps(frame, ensure_ascii=draw(st.booleans()))


def _whole_floats(draw: st.DrawFn, frame: dict[str, Json], limit: int) -> bytes | str:
    """Integers written as floats (`3.0`), which the gateway takes as the integers they are."""
    return json.dumps(_floats(frame))


def _floats(value: Json) -> Json:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, dict):
        return {k: _floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_floats(v) for v in value]
    return value


def _huge_string(draw: st.DrawFn, frame: dict[str, Json], limit: int) -> bytes | str:
    """A field holding a string near the frame limit: under it, or over it (`frame_too_large`) but
    far under the WebSocket layer's 4x bound (which closes the socket)."""
    size = draw(st.sampled_from([limit // 2, limit - 200, limit + 1, 2 * limit]))
    frame[draw(st.sampled_from(sorted(frame)))] = "h" * size
    return json.dumps(frame)


def _deep_nesting(draw: st.DrawFn, frame: dict[str, Json], limit: int) -> bytes | str:
    """A field nested a little (valid JSON) or far too deep to parse (`bad_json`, whatever the id)."""
    depth = draw(st.sampled_from([5, 40, 2_000, 5_000]))
    frame[draw(st.sampled_from(sorted(frame)))] = DEEP
    return json.dumps(frame).replace(json.dumps(DEEP), "[" * depth + json.dumps(draw(json_values)) + "]" * depth, 1)


def _bad_utf8(draw: st.DrawFn, frame: dict[str, Json], limit: int) -> bytes | str:
    raw = json.dumps(frame).encode()
    at = draw(st.integers(0, len(raw)))
    return raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"])) + raw[at:]


def _not_json(draw: st.DrawFn, frame: dict[str, Json], limit: int) -> bytes | str:
    raw = json.dumps(frame)
    return draw(
        st.sampled_from([raw[: len(raw) // 2], raw + "}", raw.replace(":", "=", 1), "", " ", "null", "[]", "42", '"query"', raw.replace('"', "'")])
    )


def _binary(draw: st.DrawFn, frame: dict[str, Json], limit: int) -> bytes | str:
    """A valid frame in a binary WebSocket message (allowed: UTF-8 JSON either way)."""
    return json.dumps(frame).encode()


Mutation = Callable[[st.DrawFn, dict[str, Json], int], bytes | str]
_MUTATIONS: list[Mutation] = [  # one in a hundred gets a huge string: they are megabytes each
    *[_valid] * 40, *[_binary] * 4, *[_whole_floats] * 4, *[_drop_field] * 7, *[_unknown_field] * 7, *[_retype_field] * 10,
    *[_rename_type] * 5, *[_odd_id] * 8, *[_deep_nesting] * 5, *[_bad_utf8] * 4, *[_not_json] * 5, _huge_string,
]


def expected_id(message: bytes | str) -> str | None:
    """The id the answer to `message` carries: its `id` when the message parses and the id is valid."""
    try:  # strict UTF-8 and strict JSON, as the gateway reads them (json.loads lets encoded surrogates and NaN pass)
        value = json.loads(message.decode() if isinstance(message, bytes) else message, parse_constant=_not_json_constant)
    except (ValueError, RecursionError):  # not UTF-8 (UnicodeDecodeError), not JSON, too deep
        return None
    frame_id = value.get("id") if isinstance(value, dict) else None
    return frame_id if isinstance(frame_id, str) and 0 < len(frame_id) <= 128 else None


def _not_json_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")
