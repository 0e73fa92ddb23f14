"""protocol/: the schema is generated from the wire types, and every example frame is valid."""

import json
import typing
from pathlib import Path

import jsonschema
import msgspec
import pytest

from gateway.wire import schema
from gateway.wire.client import AnyClientFrame
from gateway.wire.events import AnyEvent
from gateway.wire.server import AnyServerFrame

PROTOCOL = Path(__file__).resolve().parents[2] / "protocol"
EXAMPLES = sorted((PROTOCOL / "examples").glob("*.json"))
SCHEMA = json.loads((PROTOCOL / "schema.json").read_text())


def test_schema_is_generated_from_the_wire_types() -> None:
    assert schema.main(["--check"]) == 0, "protocol/schema.json is stale: run python -m gateway.wire.schema"


def tags(union: typing.Any) -> set[str]:
    return {t.__struct_config__.tag for t in typing.get_args(union)}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_a_valid_frame(path: Path) -> None:
    raw = path.read_bytes()
    kind = AnyClientFrame if path.name.startswith("client-") else AnyServerFrame
    msgspec.json.decode(raw, type=kind)
    jsonschema.validate(json.loads(raw), {**SCHEMA, "oneOf": [{"$ref": "#/$defs/" + ("ClientFrame" if kind is AnyClientFrame else "ServerFrame")}]})


def test_examples_cover_every_frame_and_event() -> None:
    frames = [json.loads(p.read_text()) for p in EXAMPLES]
    client = {f["type"] for p, f in zip(EXAMPLES, frames) if p.name.startswith("client-")}
    server = {f["type"] for p, f in zip(EXAMPLES, frames) if p.name.startswith("server-")}
    events = {f["event"]["kind"] for f in frames if f["type"] == "event"}
    assert client == tags(AnyClientFrame)
    assert server == tags(AnyServerFrame)
    assert events == tags(AnyEvent)


def test_schema_rejects_what_the_gateway_rejects() -> None:
    validator = jsonschema.Draft202012Validator({**SCHEMA, "oneOf": [{"$ref": "#/$defs/ClientFrame"}]})
    assert not validator.is_valid({"type": "query", "id": "q"})
    assert not validator.is_valid({"type": "open", "id": "o", "cwd": "/"})
    assert validator.is_valid({"type": "query", "id": "q", "prompt": "hi"})
