import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.scripted_model.server import ScriptedModelServer
from tests.support.client import WsClient
from tests.support.gateway import TOKENS, RunningGateway, run_gateway, test_settings


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


@pytest.fixture
def settings(tmp_path: Path, model_url: str):  # type: ignore[no-untyped-def]
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
def _artifacts_dir() -> None:
    os.makedirs(Path(__file__).parent.parent / "test-artifacts", exist_ok=True)
