"""Redis connection settings: every documented URL form is understood, and a real server answers."""

import pytest

from gateway.store.redis import connect, parse_sentinel_url
from tests.support import gateway as gw


def test_sentinel_urls_name_hosts_service_db_and_password() -> None:
    assert parse_sentinel_url("redis+sentinel://:pw@h1:26379,h2:26380/mymaster/2") == ([("h1", 26379), ("h2", 26380)], "mymaster", 2, "pw")
    assert parse_sentinel_url("redis+sentinel://h1/mymaster") == ([("h1", 26379)], "mymaster", 0, None)
    with pytest.raises(ValueError):
        parse_sentinel_url("redis+sentinel://h1:26379")


def test_unknown_schemes_are_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        connect(gw.test_settings(tmp_path, "http://x", redis_url="http://127.0.0.1:6379"))


async def test_a_real_server_answers(tmp_path, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    client = connect(gw.test_settings(tmp_path, "http://x", redis_url=redis_url))
    try:
        assert await client.ping() is True
    finally:
        await client.aclose()
