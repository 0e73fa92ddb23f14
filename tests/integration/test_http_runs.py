"""Run-and-poll over plain HTTP (what a service does with curl), and session management endpoints."""

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.scripted_model.script import expected_texts
from tests.support.gateway import RunningGateway
from tests.support.http import ApiClient


@pytest.fixture
async def api(gateway: RunningGateway) -> AsyncIterator[ApiClient]:
    client = ApiClient(gateway.http_url)
    yield client
    await client.close()


async def poll(api: ApiClient, run_id: str, *statuses: str, timeout: float = 30, streaming: bool = False) -> dict[str, Any]:
    """Poll a run until it has one of `statuses` (and, with `streaming`, some partial text)."""
    async with asyncio.timeout(timeout):
        while True:
            response = await api.http.get(f"/v1/sessions/{api.session_id}/runs/{run_id}")
            assert response.status_code == 200, response.text
            run = response.json()
            if run["status"] in statuses and (run["streaming_text"] or not streaming):
                return run  # type: ignore[no-any-return]
            await asyncio.sleep(0.05)


async def test_run_and_poll_to_completion(api: ApiClient) -> None:
    """What a service does with curl: create with a prompt, poll the session until its run is done."""
    created = await api.create(prompt="SCRIPT:hello")
    run = created["run"]
    assert run["status"] in ("pending", "running") and run["session_id"] == api.session_id
    assert run["prompt"] == "SCRIPT:hello"
    async with asyncio.timeout(30):
        while run["status"] not in ("completed", "error", "cancelled"):
            await asyncio.sleep(0.05)
            run = (await api.http.get(f"/v1/sessions/{api.session_id}")).json()["run"]
    assert run["status"] == "completed"
    assert run["result"]["result"] == expected_texts("hello")[0] and run["result"]["is_error"] is False
    assert [m["kind"] for m in run["messages"]][-1] == "result"
    assert any(m["kind"] == "assistant_message" for m in run["messages"])
    assert run["pending"] == [] and run["streaming_text"] is None
    assert await poll(api, run["run_id"], "completed") == run


async def test_run_waits_for_approval_then_completes(api: ApiClient) -> None:
    created = await api.create(prompt="SCRIPT:bash")
    run_id = created["run"]["run_id"]
    waiting = await poll(api, run_id, "awaiting_approval")
    request = waiting["pending"][0]
    assert request["tool_name"] == "Bash"
    await api.frame({"type": "permission_response", "request_id": request["request_id"], "decision": "allow"})
    done = await poll(api, run_id, "completed")
    assert "hello-from-agent" in done["result"]["result"]
    assert [m["outcome"] for m in done["messages"] if m["kind"] == "request_resolved"] == ["allowed"]


async def test_cancel_a_running_run_and_a_queued_one(api: ApiClient) -> None:
    created = await api.create(prompt="SCRIPT:long")
    first = created["run"]["run_id"]
    running = await poll(api, first, "running")
    queued = (await api.frame({"type": "query", "prompt": "SCRIPT:hello"}))["id"]
    assert (await poll(api, queued, "pending"))["messages"] == []
    assert running["status"] == "running"

    withdrawn = (await api.http.post(f"/v1/sessions/{api.session_id}/runs/{queued}/cancel")).json()
    assert withdrawn["status"] == "cancelled" and withdrawn["result"]["subtype"] == "cancelled"
    await poll(api, first, "running", streaming=True)
    cancelled = (await api.http.post(f"/v1/sessions/{api.session_id}/runs/{first}/cancel")).json()
    assert cancelled["status"] in ("running", "cancelled")
    stopped = await poll(api, first, "cancelled")
    assert stopped["result"]["is_error"] is True
    status = (await api.http.get(f"/v1/sessions/{api.session_id}")).json()["session"]
    assert status["state"] == "idle" and status["queued"] == 0
    again = (await api.http.post(f"/v1/sessions/{api.session_id}/runs/{first}/cancel")).json()
    assert again["status"] == "cancelled"  # cancelling a finished run changes nothing


async def test_unknown_run_and_runs_of_a_closed_session(api: ApiClient) -> None:
    await api.create()
    missing = await api.http.get(f"/v1/sessions/{api.session_id}/runs/nope")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    run_id = (await api.frame({"type": "query", "prompt": "SCRIPT:long"}))["id"]
    await poll(api, run_id, "running")
    closed = await api.http.delete(f"/v1/sessions/{api.session_id}")
    assert closed.status_code == 200 and closed.json()["state"] == "closed"
    assert (await poll(api, run_id, "cancelled", "error"))["status"] == "cancelled"
    frame = await api.http.post(f"/v1/sessions/{api.session_id}/frames", json={"type": "query", "id": "q", "prompt": "hi"})
    assert frame.status_code == 409 and frame.json()["code"] == "session_closed" and frame.json()["id"] == "q"


async def test_status_list_delete_and_close_idle(api: ApiClient, gateway: RunningGateway) -> None:
    idle = (await api.create(id="create-once"))["session"]
    assert (await api.create(id="create-once"))["session"]["session_id"] == idle["session_id"]  # idempotent
    busy_run = await api.create(prompt="SCRIPT:long")
    busy = busy_run["session"]
    await poll(api, busy_run["run"]["run_id"], "running")

    response = await api.http.get(f"/v1/sessions/{idle['session_id']}")
    assert response.json()["run"] is None
    status = response.json()["session"]
    for field in ("state", "model", "profile", "last_seq", "epoch", "pending", "turns", "total_cost_usd", "created_at", "last_activity"):
        assert field in status
    assert response.headers["last-event-id"] == f"{status['epoch']}:{status['last_seq']}"
    listed = {s["session_id"] for s in (await api.http.get("/v1/sessions")).json()["sessions"]}
    assert {idle["session_id"], busy["session_id"]} <= listed

    bob = ApiClient(gateway.http_url, "bob")
    assert (await bob.http.get("/v1/sessions")).json() == {"sessions": []}
    assert (await bob.http.delete("/v1/sessions", params={"idle_for_s": 0})).json() == {"closed": []}
    await bob.close()

    assert (await api.http.delete("/v1/sessions", params={"idle_for_s": 3600})).json() == {"closed": []}
    closed = (await api.http.delete("/v1/sessions", params={"idle_for_s": 0})).json()
    assert closed == {"closed": [idle["session_id"]]}  # the running one stays
    assert (await api.http.get(f"/v1/sessions/{idle['session_id']}")).json()["session"]["state"] == "closed"



async def test_bulk_close_does_not_wait_for_starting_clis(api: ApiClient, gateway: RunningGateway) -> None:
    """`DELETE /v1/sessions?idle_for_s=0` while sessions are starting answers with them closed at once;
    their CLIs stop in the background (a close waits for a start in flight, and eight starting
    together take seconds on two cores)."""
    created = [(await api.create())["session"]["session_id"] for _ in range(8)]
    started = time.monotonic()
    answer = await api.http.delete("/v1/sessions", params={"idle_for_s": 0})
    answered = time.monotonic() - started
    assert sorted(answer.json()["closed"]) == sorted(created)
    for session_id in created:
        assert (await api.http.get(f"/v1/sessions/{session_id}")).json()["session"]["state"] == "closed"
    sessions = [await gateway.manager.get("alice", session_id) for session_id in created]
    await asyncio.gather(*(gateway.manager.close(s, "again") for s in sessions))  # waits for the first closes
    stopped = time.monotonic() - started
    assert answered < stopped / 3, (answered, stopped)
