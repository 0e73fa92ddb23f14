"""Several gateways on one machine as production runs them: N real `python -m gateway serve`
processes sharing one redis-server, behind a real nginx running the shipped `deploy/nginx.conf`
(round robin, no stickiness). Only the upstream list, the listen address and nginx's temp paths
are changed.

Tests use `run_cluster`; people use `make cluster` (`python -m tests.support.cluster`), which runs
the same topology until Ctrl-C. Every replica answers with `X-Replica: <its id>`, so a test can
tell which one served a request, and can SIGKILL, SIGTERM or SIGSTOP any one of them.
"""

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.gateway import TOKENS, free_port
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
SYSTEM_DEPS = ROOT / "scripts" / "system-deps.sh"
UPSTREAM_RE = re.compile(r"(upstream agent_gateway \{\n)((?:\s*server [^;]+;\n)+)")


def find_nginx(install: bool = True) -> str | None:
    """nginx from the system; with `install`, `scripts/system-deps.sh test` is tried first when missing."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if found is None and install:
        subprocess.run(["bash", str(SYSTEM_DEPS), "test"], capture_output=True, timeout=900)
        found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    return found


def nginx_config(tmp: Path, listen: int, upstreams: list[int]) -> Path:
    """deploy/nginx.conf listening on 127.0.0.1:`listen` with its upstream servers replaced by
    127.0.0.1:`upstreams` (their options and everything else as shipped), and temp files under `tmp`."""
    text = NGINX_CONF.read_text()
    assert text.count("listen 8080;") == 1 and len(UPSTREAM_RE.findall(text)) == 1
    text = text.replace("listen 8080;", f"listen 127.0.0.1:{listen};")
    options = re.match(r"\s*server \S+?( [^;]*)?;", UPSTREAM_RE.search(text).group(2)).group(1) or ""  # type: ignore[union-attr]
    servers = "".join(f"        server 127.0.0.1:{port}{options};\n" for port in upstreams)
    text = UPSTREAM_RE.sub(lambda m: m.group(1) + servers, text)
    temp = "".join(f"    {kind}_temp_path {tmp / kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    text = text.replace("http {\n", "http {\n" + temp, 1)
    path = tmp / "nginx.conf"
    path.write_text(text)
    return path


async def wait_listening(port: int, process_alive: Callable[[], bool], what: str, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while True:
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return
            if not process_alive():
                raise RuntimeError(f"{what} exited before listening")
            await asyncio.sleep(0.05)


@dataclass
class Replica:
    """One `python -m gateway serve` process with its own port, id and sessions directory."""

    replica_id: str
    directory: Path
    environ: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.directory / "gateway.log"

    async def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        env = {
            **self.environ,
            "AGENT_GATEWAY_PORT": str(self.port),
            "AGENT_GATEWAY_REPLICA_ID": self.replica_id,
            "AGENT_GATEWAY_SESSIONS_DIR": str(self.directory / "sessions"),
        }
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        async with httpx.AsyncClient() as http, asyncio.timeout(60):
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{self.url}/healthz")).status_code == 200:
                        return
                if self.proc.poll() is not None:
                    raise RuntimeError(f"replica {self.replica_id} exited: {self.log.read_text(errors='replace')[-2000:]}")
                await asyncio.sleep(0.05)

    def signal(self, sig: signal.Signals) -> None:
        """SIGKILL (a crash), SIGTERM (a deploy: sockets close with 1012), SIGSTOP / SIGCONT (a frozen host)."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        async with asyncio.timeout(timeout):
            while self.proc.poll() is None:
                await asyncio.sleep(0.05)
        return self.proc.returncode

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a frozen one can't act on SIGTERM
            self.proc.terminate()
            try:
                await self.wait(20)
            except TimeoutError:
                self.proc.kill()
                await self.wait()


@dataclass
class Cluster:
    directory: Path
    redis: RedisServer
    replicas: list[Replica]
    nginx_binary: str
    port: int = field(default_factory=free_port)
    nginx: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    def replica(self, replica_id: str) -> Replica:
        [found] = [r for r in self.replicas if r.replica_id == replica_id]
        return found

    async def start(self) -> None:
        await asyncio.gather(*(r.start() for r in self.replicas))
        config = nginx_config(self.directory, self.port, [r.port for r in self.replicas])
        self.nginx = subprocess.Popen([
            self.nginx_binary, "-p", str(self.directory), "-c", str(config), "-e", str(self.directory / "nginx-error.log"),
            "-g", f"daemon off; pid {self.directory / 'nginx.pid'};",
        ])
        nginx = self.nginx
        await wait_listening(self.port, lambda: nginx.poll() is None, "nginx")

    async def stop(self) -> None:
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.terminate()
            await asyncio.to_thread(self.nginx.wait)
        await asyncio.gather(*(r.stop() for r in self.replicas))


def replica_environ(redis_url: str, model_url: str | None, **extra: str) -> dict[str, str]:
    """What every replica shares: Redis, tokens, the ticket secret, the model."""
    environ = {
        "PATH": os.environ["PATH"],
        "AGENT_GATEWAY_REDIS_URL": redis_url,
        "AGENT_GATEWAY_TOKENS": ",".join(f"{p}={t}" for p, t in TOKENS.items()),
        "AGENT_GATEWAY_TICKET_SECRET": secrets.token_urlsafe(32),
    }
    if model_url is not None:
        environ.update(AGENT_GATEWAY_DEMO="off", ANTHROPIC_BASE_URL=model_url, ANTHROPIC_API_KEY="sk-test")
    return {**environ, **extra}


@contextlib.asynccontextmanager
async def run_cluster(
    tmp: Path, model_url: str | None, nginx_binary: str, replicas: int = 3, redis: RedisServer | None = None,
    port: int | None = None, **env: str,
) -> AsyncIterator[Cluster]:
    """`replicas` gateways named r1, r2, … behind nginx (on `port`, else a free one); a redis-server
    of the cluster's own unless given."""
    own_redis = redis is None
    server = redis or RedisServer(tmp / "redis").start()
    environ = replica_environ(server.url, model_url, **env)
    members = [Replica(f"r{n}", tmp / f"r{n}", environ) for n in range(1, replicas + 1)]
    cluster = Cluster(tmp, server, members, nginx_binary, port or free_port())
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.stop()
        if own_redis:
            server.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(prog="make cluster", description="redis-server + N gateways + nginx (round robin) on this machine, until Ctrl-C.")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--port", type=int, default=8080, help="nginx listens here")
    args = parser.parse_args()
    nginx = find_nginx(install=False)
    if nginx is None:
        raise SystemExit("nginx is not installed (scripts/system-deps.sh test installs it)")
    tmp = Path(tempfile.mkdtemp(prefix="agent-gateway-cluster-"))
    extra = {k: v for k, v in os.environ.items() if k in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "AGENT_GATEWAY_TOKENS")}
    token = TOKENS["alice"] if "AGENT_GATEWAY_TOKENS" not in extra else "<your token>"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with run_cluster(tmp, None, nginx, args.replicas, port=args.port, **extra) as cluster:
        print(f"redis {cluster.redis.url}; replicas {', '.join(f'{r.replica_id} {r.url}' for r in cluster.replicas)}; logs in {tmp}")
        print(f"chat page: {cluster.url}/#token={token}  (Ctrl-C stops everything)", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
