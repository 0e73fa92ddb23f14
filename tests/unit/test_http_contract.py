"""protocol/HTTP.md and /openapi.json stay in step with the operation table and the status table."""

import re
from pathlib import Path

from gateway.transports.http_api import OPERATIONS
from gateway.transports.openapi import ALL_OPERATIONS, document
from gateway.transports.problems import STATUS
from gateway.transports.sse import message, messages, parse_cursor
from gateway.wire.codec import frame_bytes
from gateway.wire.errors import ErrorCode
from gateway.wire.events import StateChanged
from gateway.wire.server import EventFrame

DOC = (Path(__file__).resolve().parents[2] / "protocol" / "HTTP.md").read_text()


def test_every_endpoint_is_documented() -> None:
    for op in ALL_OPERATIONS:
        path = op.path.replace("{session_id}", "{id}")
        assert f"`{op.method} {path}" in DOC, f"{op.method} {path} missing from protocol/HTTP.md"


def test_status_table_matches_the_code() -> None:
    section = DOC[DOC.index("| code | status |") :]
    documented = {
        ErrorCode(code): int(status)
        for codes, status in re.findall(r"^\| (`[^|]+) \| (\d{3}) \|$", section, re.MULTILINE)
        for code in re.findall(r"`([a-z_]+)`", codes)
    }
    assert documented == STATUS


def test_openapi_lists_each_operations_problem_statuses() -> None:
    paths = document(ALL_OPERATIONS)["paths"]
    for op in OPERATIONS:
        responses = paths[op.path][op.method.lower()]["responses"]
        assert {str(STATUS[code]) for code in op.errors} <= set(responses)


def test_sse_ids_are_read_from_the_frames() -> None:
    frames = [frame_bytes(EventFrame(seq=seq, epoch="e1", ts=0, event=StateChanged(state="idle"))) for seq in (7, 8)]
    assert messages(frames) == message(frames[0], "e1", 7) + message(frames[1], "e1", 8)
    assert message(frames[0], "e1", 7).startswith(b"id: e1:7\ndata: {")
    assert [parse_cursor(c) for c in ("e1:7", "7", ":7")] == [("e1", 7), (None, 7), (None, 7)]
