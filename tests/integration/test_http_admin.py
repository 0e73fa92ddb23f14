"""Profiles and their dry run, tickets for EventSource, health (Redis included), CORS and the OpenAPI document."""

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.profiles import DEMO_PROFILE, Profile
from gateway.transports.http_api import OPERATIONS
from tests.support.gateway import TOKENS, RunningGateway, run_gateway
from tests.support.gateway import test_settings as make_settings
from tests.support.http import ApiClient
from tests.support.redis_server import RedisServer

SECRET_PROFILE = Profile(
    name="secret", description="Has an environment and a prompt of its own", env={"API_TOKEN": "do-not-leak"},
    system_prompt="internal instructions", allowed_tools=["Read", "Reed"], models=["claude-haiku-4-5"], model="claude-haiku-4-5",
)


@pytest.fixture
async def api(gateway: RunningGateway) -> AsyncIterator[ApiClient]:
    client = ApiClient(gateway.http_url)
    yield client
    await client.close()


async def test_profiles_show_choices_but_never_secrets(tmp_path: Path, model_url: str) -> None:
    async with run_gateway(make_settings(tmp_path, model_url), {"default": DEMO_PROFILE, "secret": SECRET_PROFILE}) as gw:
        api = ApiClient(gw.http_url)
        response = await api.http.get("/v1/profiles")
        assert "do-not-leak" not in response.text and "internal instructions" not in response.text
        profiles = {p["name"]: p for p in response.json()["profiles"]}
        assert profiles["secret"]["models"] == ["claude-haiku-4-5"]
        assert profiles["default"]["permission_modes"] == ["default", "acceptEdits", "plan"]
        assert profiles["default"]["allowed_tools"] == ["Read", "Grep", "Glob"]
        assert not {"env", "system_prompt", "append_system_prompt"} & set(profiles["default"])

        check = (await api.http.post("/v1/profiles/secret/check")).json()
        assert check["ok"] is True, check
        assert check["model"] == "claude-haiku-4-5" and check["cli_version"]
        assert "Read" in check["tools"] and check["mcp_servers"] == [] and check["errors"] == []
        assert [w for w in check["warnings"] if "'Reed'" in w]
        assert not [p for p in (tmp_path / "sessions").iterdir() if p.name not in (".claude", ".mcp.json")]  # the probe cleaned up after itself
        await api.close()


async def test_profile_check_reports_a_cli_that_does_not_start(tmp_path: Path, model_url: str) -> None:
    async with run_gateway(make_settings(tmp_path, model_url, cli_path=str(tmp_path / "missing-claude"))) as gw:
        api = ApiClient(gw.http_url)
        check = (await api.http.post("/v1/profiles/default/check")).json()
        assert check["ok"] is False and check["errors"][0].startswith("the CLI failed")
        ready = await api.http.get("/readyz")
        assert ready.status_code == 503
        assert {c["name"]: c["ok"] for c in ready.json()["checks"]}["cli"] is False
        await api.close()


async def test_health_and_readiness(api: ApiClient) -> None:
    anonymous = httpx.AsyncClient(base_url=str(api.http.base_url))
    assert (await anonymous.get("/healthz")).json() == {"status": "ok", "demo": False}
    ready = await anonymous.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert "Claude Code" in {c["name"]: c["detail"] for c in ready.json()["checks"]}["cli"]
    await anonymous.aclose()


async def test_eventsource_auth_with_a_ticket(tmp_path: Path, model_url: str) -> None:
    """EventSource can't send headers: it opens the stream with `?ticket=`; an expired ticket is a 401."""
    async with run_gateway(make_settings(tmp_path, model_url, ticket_ttl_s=3)) as gw:
        api = ApiClient(gw.http_url)
        await api.create()
        ticket = (await api.http.post("/v1/tickets")).json()["ticket"]
        browser = ApiClient(gw.http_url, token="unused")
        browser.http.headers.pop("Authorization")
        browser.session_id = api.session_id
        async with browser.stream(ticket=ticket) as stream:
            assert (await stream.recv())["type"] == "attached"
        await asyncio.sleep(3.1)
        expired = await browser.http.get(f"/v1/sessions/{api.session_id}/events", params={"ticket": ticket})
        assert expired.status_code == 401  # EventSource gives up; the page gets a new ticket and passes last_event_id
        await api.close()
        await browser.close()


async def test_cors_allows_and_exposes_last_event_id(tmp_path: Path, model_url: str) -> None:
    async with run_gateway(make_settings(tmp_path, model_url, cors_origins="https://app.example")) as gw:
        async with httpx.AsyncClient(base_url=gw.http_url) as client:
            preflight = await client.options("/v1/sessions/s_x/events", headers={
                "Origin": "https://app.example", "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization, last-event-id",
            })
            assert preflight.status_code == 200
            assert preflight.headers["access-control-allow-origin"] == "https://app.example"
            assert "last-event-id" in preflight.headers["access-control-allow-headers"].lower()
            response = await client.get("/v1/sessions", headers={"Origin": "https://app.example", "Authorization": f"Bearer {TOKENS['alice']}"})
            assert "last-event-id" in response.headers["access-control-expose-headers"].lower()
            foreign = await client.get("/v1/sessions", headers={"Origin": "https://evil.example", "Authorization": f"Bearer {TOKENS['alice']}"})
            assert "access-control-allow-origin" not in foreign.headers


async def test_openapi_describes_every_endpoint(api: ApiClient) -> None:
    document = (await api.http.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    for op in OPERATIONS:
        described = document["paths"][op.path][op.method.lower()]
        assert str(op.status) in described["responses"]
        assert described["operationId"] == op.endpoint.__name__
    assert document["paths"]["/openapi.json"]["get"]["security"] == []
    frames = document["paths"]["/v1/sessions/{session_id}/frames"]["post"]
    assert frames["responses"]["422"]["content"]["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
    assert {"Query", "PermissionResponse", "ResetConversation", "Run", "SessionInfo", "EventFrame"} <= set(document["components"]["schemas"])


async def test_readiness_reports_redis_and_a_frozen_redis_makes_it_503_within_the_timeout(tmp_path: Path, model_url: str) -> None:
    server = RedisServer(tmp_path / "redis").start()  # this test's own: it freezes it
    try:
        async with run_gateway(make_settings(tmp_path, model_url, redis_url=server.url, redis_timeout_s=0.5)) as gw:
            anonymous = httpx.AsyncClient(base_url=gw.http_url, timeout=30)
            ready = await anonymous.get("/readyz")
            assert ready.status_code == 200, ready.json()
            assert {c["name"]: c["ok"] for c in ready.json()["checks"]}["redis"] is True
            server.pause()
            started = time.monotonic()
            unready = await anonymous.get("/readyz")
            assert unready.status_code == 503 and unready.json()["status"] == "unready"
            redis_check = {c["name"]: c for c in unready.json()["checks"]}["redis"]
            assert redis_check["ok"] is False and "0.5 s" in redis_check["detail"]
            assert time.monotonic() - started < 5  # bounded by redis_timeout_s (plus the CLI's --version beside it)
            server.resume()
            assert (await anonymous.get("/readyz")).status_code == 200  # ready again, on the same client
            await anonymous.aclose()
    finally:
        server.resume()
        server.stop()
