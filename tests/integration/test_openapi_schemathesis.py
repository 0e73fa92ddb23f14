"""A generic tool exercises every endpoint from /openapi.json alone: schemathesis must find no 5xx and no
response (status, content type, headers, body, SSE events) that contradicts the document."""

import asyncio
import os
import sys
from pathlib import Path

import httpx

from tests.support.gateway import TOKENS, run_gateway
from tests.support.gateway import test_settings as make_settings

BUDGET_S = 45
CHECKS = (
    "not_a_server_error", "status_code_conformance", "content_type_conformance", "response_headers_conformance",
    "response_schema_conformance", "negative_data_rejection",
)
# Operations on one session get a live one (random ids only reach 404s, which test_http_errors covers).
# Not `fork`: each would start a CLI (test_sdk_surface covers it).
# An event stream with `follow` stays open: read only its first message (attached or reset).
CONFIG = """
[[operations]]
include-path-regex = "^/v1/sessions/[{{]session_id[}}]/(frames|events|snapshot|runs/.*)$"
parameters = {{ "path.session_id" = "{session_id}", "path.run_id" = "{run_id}" }}

[[operations]]
include-path = "/v1/sessions/{{session_id}}/events"
max-stream-events = 1
"""


async def test_schemathesis_finds_nothing(tmp_path: Path, model_url: str) -> None:
    schemathesis = Path(sys.executable).with_name("schemathesis")
    async with run_gateway(make_settings(tmp_path, model_url, max_sessions_per_principal=20)) as gw:
        async with httpx.AsyncClient(base_url=gw.http_url, headers={"Authorization": f"Bearer {TOKENS['alice']}"}) as client:
            created = (await client.post("/v1/sessions", json={"prompt": "SCRIPT:hello"}, timeout=60)).json()
        config = tmp_path / "schemathesis.toml"
        config.write_text(CONFIG.format(session_id=created["session"]["session_id"], run_id=created["run"]["run_id"]))
        process = await asyncio.create_subprocess_exec(
            str(schemathesis), "--config-file", str(config), "run", f"{gw.http_url}/openapi.json",
            "--header", f"Authorization: Bearer {TOKENS['alice']}",
            "--checks", ",".join(CHECKS),
            "--phases", "examples,coverage,fuzzing",
            "--max-time", str(BUDGET_S),
            "--request-timeout", "30",
            "--workers", "1",
            "--no-color",
            # CI explores a fixed sequence (a landing must not hang on a lucky draw); locally each run explores anew.
            *(["--seed", "20261122"] if os.environ.get("CI") else []),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
        )
        output, _ = await asyncio.wait_for(process.communicate(), BUDGET_S + 120)
    report = output.decode(errors="replace")
    assert process.returncode == 0, report[-8000:]
    assert "16 selected / 16 total" in report and "Tested: 16" in report, report[-3000:]
