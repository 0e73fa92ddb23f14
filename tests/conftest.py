import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import uvloop

from gateway.scripted_model.server import ScriptedModelServer
from gateway.sessions.agent_options import keep_sandbox_placeholders
from tests.support.client import WsClient
from tests.support.gateway import TOKENS, RunningGateway, run_gateway, test_settings
from tests.support.redis_server import RedisServer


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, object]:
    """Every async test runs on the loop `serve` runs on by default (`--event-loop auto`: uvloop)."""
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture(scope="session")
def model_server() -> Iterator[ScriptedModelServer]:
    """One scripted model per test process: it is stateless, so every CLI can share it."""
    server = ScriptedModelServer()
    server.start_in_thread()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def model_url(model_server: ScriptedModelServer) -> str:
    return model_server.url


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server per test process; tests that need their own (to kill it) make one."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared test Redis, emptied for each test."""
    import redis

    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url


@pytest.fixture(params=["memory", "redis"])
def settings(request: pytest.FixtureRequest, tmp_path: Path, model_url: str):  # type: ignore[no-untyped-def]
    """Every test of a gateway runs on both backends: in memory, and on the shared Redis (as one replica)."""
    if request.param == "redis":
        return test_settings(tmp_path, model_url, redis_url=request.getfixturevalue("redis_url"))
    return test_settings(tmp_path, model_url)


@pytest.fixture
async def gateway(settings) -> AsyncIterator[RunningGateway]:  # type: ignore[no-untyped-def]
    async with run_gateway(settings) as gw:
        yield gw


@pytest.fixture
async def alice(gateway: RunningGateway) -> AsyncIterator[WsClient]:
    client = await WsClient.connect(gateway.ws_url, TOKENS["alice"])
    yield client
    await client.close()


@pytest.fixture(scope="session", autouse=True)
def _sandbox_placeholders(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests' sessions share the temp directories above them (up to /tmp): keep the CLI's sandbox
    placeholders there too, as the gateway does in its sessions root (see keep_sandbox_placeholders)."""
    base = tmp_path_factory.getbasetemp()
    for directory in [base, *base.parents][:-1]:  # every ancestor but /
        keep_sandbox_placeholders(directory)


@pytest.fixture(scope="session", autouse=True)
def _artifacts_dir() -> None:
    os.makedirs(Path(__file__).parent.parent / "test-artifacts", exist_ok=True)
