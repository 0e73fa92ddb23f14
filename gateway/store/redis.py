"""The one place a replica connects to Redis: URL forms, pool size and timeouts come from settings.

Every command is async (redis-py asyncio), and every one is bounded by `redis_timeout_s`, so a slow or
unreachable Redis costs waiting coroutines, never a blocked event loop.
"""

from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel

from gateway.config import Settings

SENTINEL_SCHEME = "redis+sentinel"


def connect(settings: Settings) -> Redis:
    """A client for `settings.redis_url`: `redis://`, `rediss://` (TLS), or
    `redis+sentinel://[:password@]host:port[,host:port…]/service[/db]` (the current master, found
    through Sentinel and followed across failovers)."""
    url = settings.redis_url
    common = {
        "socket_timeout": settings.redis_timeout_s,
        "socket_connect_timeout": settings.redis_timeout_s,
        "health_check_interval": 15,
        "retry_on_timeout": False,
    }
    if url.startswith(SENTINEL_SCHEME + "://"):
        hosts, service, db, password = parse_sentinel_url(url)
        sentinel = Sentinel(hosts, sentinel_kwargs={"password": password, **common}, password=password, db=db, **common)
        return sentinel.master_for(service, max_connections=settings.redis_pool_size)
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"redis_url must start with redis://, rediss://, unix:// or {SENTINEL_SCHEME}://")
    return Redis.from_url(url, max_connections=settings.redis_pool_size, **common)


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str, int, str | None]:
    """(sentinel addresses, service name, db, password) of a `redis+sentinel://` URL."""
    parts = urlsplit(url)
    auth, _, hostlist = parts.netloc.rpartition("@")
    password = unquote(auth.partition(":")[2]) or None if auth else None
    hosts = []
    for item in hostlist.split(","):
        host, _, port = item.rpartition(":")
        hosts.append((host, int(port)) if host else (item, 26379))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError("redis+sentinel:// needs the service name as its path: redis+sentinel://host:26379/mymaster")
    return hosts, path[0], int(path[1]) if len(path) > 1 else 0, password
