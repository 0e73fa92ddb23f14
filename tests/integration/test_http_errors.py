"""Every bad request gets a problem document (RFC 9457) with the documented status and code; never a 500."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from gateway.transports.problems import STATUS
from gateway.wire.errors import ErrorCode
from tests.support.gateway import TOKENS, RunningGateway, run_gateway
from tests.support.gateway import test_settings as make_settings

ALICE = {"Authorization": f"Bearer {TOKENS['alice']}"}
BOB = {"Authorization": f"Bearer {TOKENS['bob']}"}
LIMIT = 4096
pytestmark = pytest.mark.asyncio(loop_scope="module")  # one gateway for the many cases below


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gw(tmp_path_factory: pytest.TempPathFactory, model_url: str) -> AsyncIterator[RunningGateway]:
    settings = make_settings(tmp_path_factory.mktemp("errors"), model_url, max_frame_bytes=LIMIT, max_sessions_per_principal=2, max_queued_queries=1)
    async with run_gateway(settings) as gateway:
        yield gateway


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http(gw: RunningGateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gw.http_url, timeout=60) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sid(http: httpx.AsyncClient) -> str:
    response = await http.post("/v1/sessions", headers=ALICE, json={})
    return response.json()["session"]["session_id"]  # type: ignore[no-any-return]


def assert_problem(response: httpx.Response, code: str, frame_id: str | None = None) -> dict[str, Any]:
    assert response.headers["content-type"] == "application/problem+json", (response.status_code, response.text)
    body = response.json()
    assert (response.status_code, body["code"]) == (STATUS[ErrorCode(code)], code), body
    assert body["status"] == response.status_code and body["type"] == f"urn:agent-gateway:problem:{code}"
    assert body["title"] and body["detail"]
    assert body.get("id") == frame_id
    return body  # type: ignore[no-any-return]


AUTHENTICATED = [
    ("POST", "/v1/sessions"), ("GET", "/v1/sessions"), ("DELETE", "/v1/sessions?idle_for_s=1"), ("GET", "/v1/sessions/{sid}"),
    ("DELETE", "/v1/sessions/{sid}"), ("GET", "/v1/sessions/{sid}/events"), ("POST", "/v1/sessions/{sid}/frames"),
    ("GET", "/v1/sessions/{sid}/snapshot"), ("GET", "/v1/sessions/{sid}/runs/r"), ("POST", "/v1/sessions/{sid}/runs/r/cancel"),
    ("GET", "/v1/profiles"), ("POST", "/v1/profiles/default/check"), ("POST", "/v1/tickets"),
]


@pytest.mark.parametrize(("method", "path"), AUTHENTICATED)
@pytest.mark.parametrize("auth", [None, "Bearer wrong-token-0123456789", "Basic YTpi"])
async def test_unauthenticated(http: httpx.AsyncClient, sid: str, method: str, path: str, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {}
    response = await http.request(method, path.format(sid=sid), headers=headers, params={"ticket": "forged"} if auth is None else None)
    assert_problem(response, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")


BAD_CREATES = [
    (b"{", "bad_json"),
    (b'{"profile": 5}', "bad_frame"),
    (b'{"surprise": true}', "bad_frame"),
    (b"[]", "bad_frame"),
    (b'{"max_turns": 0}', "bad_frame"),
    (b'{"prompt": ""}', "bad_frame"),
    (b'{"profile": "nope"}', "profile_not_found"),
    (b'{"model": "gpt-4"}', "model_not_allowed"),
    (b'{"permission_mode": "bypassPermissions"}', "mode_not_allowed"),
    (b'{"allowed_tools": ["Bash"]}', "forbidden_option"),
    (b'{"max_turns": 999}', "forbidden_option"),
    (b'{"max_turns": 999.0}', "forbidden_option"),  # a whole number is an integer however written: read, then refused
    (b'{"max_turns": 3.5}', "bad_frame"),
    (b'{"max_turns": "3"}', "bad_frame"),
    (b'{"profile": "\xff"}', "bad_json"),
    (b'{"prompt": [{"type": "text", "text": "a", "citations": [{"x": ' + b"[" * 1800 + b"]" * 1800 + b"}]}]}", "bad_json"),  # nested too deeply
]


@pytest.mark.parametrize(("body", "code"), BAD_CREATES)
async def test_bad_create_bodies(http: httpx.AsyncClient, body: bytes, code: str) -> None:
    assert_problem(await http.post("/v1/sessions", headers=ALICE, content=body), code)


async def test_oversized_bodies(http: httpx.AsyncClient, sid: str) -> None:
    big = b'{"type":"query","id":"q","prompt":"' + b"x" * LIMIT + b'"}'
    assert_problem(await http.post(f"/v1/sessions/{sid}/frames", headers=ALICE, content=big), "frame_too_large")

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: refused while reading
        for _ in range(LIMIT // 512 + 2):
            yield b" " * 512

    assert_problem(await http.post("/v1/sessions", headers=ALICE, content=chunked()), "frame_too_large")


BAD_FRAMES = [
    (b"not json", "bad_json", None),
    (b"", "bad_json", None),
    (b'{"id": "f1"}', "bad_frame", "f1"),
    (b'{"type": "warp", "id": "f2"}', "unknown_type", "f2"),
    (b'{"type": "query", "id": "f3"}', "bad_frame", "f3"),
    (b'{"type": "query", "id": "f4", "prompt": 7}', "bad_frame", "f4"),
    (b'{"type": "open", "id": "f5"}', "unknown_type", "f5"),
    (b'{"type": "ping", "id": "f6"}', "unknown_type", "f6"),
    (b'{"type": "permission_response", "id": "f7", "request_id": "r", "decision": "allow", "apply_suggestions": [0.0]}', "unknown_request", "f7"),
    (b'{"type": "permission_response", "id": "f8", "request_id": "r", "decision": "allow", "apply_suggestions": [0.5]}', "bad_frame", "f8"),
    (b'{"type": "permission_response", "id": "f7", "request_id": "req_x", "decision": "allow"}', "unknown_request", "f7"),
    (b'{"type": "question_response", "id": "f8", "request_id": "req_x", "answers": {}}', "unknown_request", "f8"),
    (b'{"type": "set_model", "id": "f9", "model": "gpt-4"}', "model_not_allowed", "f9"),
    (b'{"type": "set_permission_mode", "id": "f10", "mode": "bypassPermissions"}', "mode_not_allowed", "f10"),
    (b'{"type": "reset_conversation", "id": "f11", "mode": "medium"}', "bad_frame", "f11"),
    (b'{"type": "query", "id": "f12", "prompt": [{"type": "text", "text": "a", "citations": [{"x": ' + b"[" * 1800 + b"]" * 1800 + b"}]}]}", "bad_json", None),
]


@pytest.mark.parametrize(("body", "code", "frame_id"), BAD_FRAMES)
async def test_bad_frames(http: httpx.AsyncClient, sid: str, body: bytes, code: str, frame_id: str | None) -> None:
    assert_problem(await http.post(f"/v1/sessions/{sid}/frames", headers=ALICE, content=body), code, frame_id)


async def test_a_connection_frame_under_a_known_id_is_still_unknown_type(http: httpx.AsyncClient, sid: str) -> None:
    """Frame ids are remembered per session; `open`, `attach` and `ping` aren't session frames under any id."""
    assert (await http.post(f"/v1/sessions/{sid}/frames", headers=ALICE, json={"type": "interrupt", "id": "k1"})).status_code == 200
    for frame in ({"type": "ping", "id": "k1"}, {"type": "attach", "id": "k1", "session_id": sid}):
        assert_problem(await http.post(f"/v1/sessions/{sid}/frames", headers=ALICE, json=frame), "unknown_type", "k1")


async def test_queue_full_and_too_many_sessions(http: httpx.AsyncClient, sid: str) -> None:
    other = (await http.post("/v1/sessions", headers=ALICE, json={"prompt": "SCRIPT:long"})).json()["session"]["session_id"]
    assert_problem(await http.post("/v1/sessions", headers=ALICE, json={}), "too_many_sessions")
    await http.post(f"/v1/sessions/{other}/frames", headers=ALICE, json={"type": "query", "id": "q1", "prompt": "SCRIPT:hello"})
    response = await http.post(f"/v1/sessions/{other}/frames", headers=ALICE, json={"type": "query", "id": "q2", "prompt": "SCRIPT:hello"})
    assert_problem(response, "queue_full", "q2")
    await http.delete(f"/v1/sessions/{other}", headers=ALICE)


OTHER_PRINCIPAL = [
    ("GET", "/v1/sessions/{sid}"), ("DELETE", "/v1/sessions/{sid}"), ("GET", "/v1/sessions/{sid}/events"),
    ("POST", "/v1/sessions/{sid}/frames"), ("GET", "/v1/sessions/{sid}/snapshot"), ("GET", "/v1/sessions/{sid}/runs/r"),
    ("POST", "/v1/sessions/{sid}/runs/r/cancel"),
]


@pytest.mark.parametrize(("method", "path"), OTHER_PRINCIPAL)
@pytest.mark.parametrize("who", ["bob", "missing"])
async def test_other_principals_session_is_missing(http: httpx.AsyncClient, sid: str, method: str, path: str, who: str) -> None:
    target = sid if who == "bob" else "s_doesnotexist"
    body = b'{"type": "interrupt", "id": "i"}'
    response = await http.request(method, path.format(sid=target), headers=BOB, content=body if method == "POST" else None)
    problem = assert_problem(response, "session_not_found")
    assert problem["detail"] == f"no session {target}"  # bob learns nothing he couldn't guess


@pytest.mark.parametrize(
    ("method", "path", "headers", "code"),
    [
        ("GET", "/v1/sessions/{sid}/events", {"Last-Event-ID": "garbage"}, "bad_frame"),
        ("GET", "/v1/sessions/{sid}/events?last_event_id=e:-1", {}, "bad_frame"),
        ("GET", "/v1/sessions/{sid}/events?last_event_id=e:99999999999999999999", {}, "bad_frame"),
        ("GET", "/v1/sessions/{sid}/events?follow=maybe", {}, "bad_frame"),
        ("POST", "/v1/sessions/{sid}/frames", {"X-Connection-Id": "spaces are not allowed"}, "bad_frame"),
        ("DELETE", "/v1/sessions", {}, "bad_frame"),
        ("DELETE", "/v1/sessions?idle_for_s=-1", {}, "bad_frame"),
        ("DELETE", "/v1/sessions?idle_for_s=soon", {}, "bad_frame"),
        ("DELETE", "/v1/sessions?idle_for_s=nan", {}, "bad_frame"),
        ("GET", "/v1/sessions/{sid}/runs/none", {}, "not_found"),
        ("POST", "/v1/profiles/nope/check", {}, "profile_not_found"),
        ("GET", "/v1/nothing-here", {}, "not_found"),
        ("PUT", "/v1/sessions", {}, "method_not_allowed"),
        ("POST", "/v1/sessions/{sid}/snapshot", {}, "method_not_allowed"),
    ],
)
async def test_bad_parameters_paths_and_methods(http: httpx.AsyncClient, sid: str, method: str, path: str, headers: dict[str, str], code: str) -> None:
    body = b'{"type": "interrupt", "id": "i"}' if method == "POST" else None
    assert_problem(await http.request(method, path.format(sid=sid), headers={**ALICE, **headers}, content=body), code)


async def test_wrong_method_lists_the_allowed_ones(http: httpx.AsyncClient) -> None:
    response = await http.put("/v1/sessions", headers=ALICE)
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "POST", "DELETE"}


async def test_errors_need_no_session_state(tmp_path: Path, model_url: str) -> None:
    """A gateway without a reachable model still answers requests with problems, not 500s."""
    async with run_gateway(make_settings(tmp_path, "http://127.0.0.1:9", cli_path="/nonexistent/claude")) as gateway:
        async with httpx.AsyncClient(base_url=gateway.http_url, headers=ALICE, timeout=60) as client:
            created = await client.post("/v1/sessions", json={"prompt": "hi"})  # answered at once; the CLI fails after
            assert created.status_code == 201, created.text
            location = created.headers["location"]
            for _ in range(200):
                status = (await client.get(location)).json()
                if status["run"]["status"] == "error":
                    break
                await asyncio.sleep(0.05)
            assert status["session"]["state"] == "failed" and status["run"]["status"] == "error", status
            ready = await client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["status"] == "unready"
