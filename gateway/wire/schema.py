"""Generate protocol/schema.json from the wire types: `python -m gateway.wire.schema [--check]`."""

import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from gateway import PROTOCOL_VERSION
from gateway.wire.client import AnyClientFrame
from gateway.wire.server import AnyServerFrame

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "protocol" / "schema.json"


def build() -> dict[str, Any]:
    (client, server), components = msgspec.json.schema_components(
        [AnyClientFrame, AnyServerFrame], ref_template="#/$defs/{name}"
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://agent-gateway.dev/protocol/v{PROTOCOL_VERSION}/schema.json",
        "title": f"agent-gateway wire protocol v{PROTOCOL_VERSION}",
        "description": "ClientFrame: what clients send. ServerFrame: what the gateway sends. See PROTOCOL.md.",
        "$defs": {**components, "ClientFrame": client, "ServerFrame": server},
        "oneOf": [{"$ref": "#/$defs/ClientFrame"}, {"$ref": "#/$defs/ServerFrame"}],
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if SCHEMA_PATH.read_text() != text:
            print(f"{SCHEMA_PATH} is stale: run python -m gateway.wire.schema", file=sys.stderr)
            return 1
        return 0
    SCHEMA_PATH.write_text(text)
    print(f"wrote {SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
