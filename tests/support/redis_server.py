"""Real `redis-server` processes for tests, on free ports, that a test can kill, pause and restart;
replicas of one another, and a Sentinel that fails them over.

Each test process (xdist worker) runs its own server, so workers never share keys.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.support.gateway import free_port

BINARY = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    """One redis-server. `appendonly=True` keeps data across `restart()` (an AOF in `directory`);
    `replica_of` makes it a replica of that server."""

    def __init__(self, directory: Path, port: int | None = None, *, appendonly: bool = False, replica_of: "RedisServer | None" = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.appendonly = appendonly
        self.replica_of = replica_of
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([BINARY, *self.args()], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on {self.port}: {(self.directory / 'redis.log').read_text(errors='replace')}")

    def args(self) -> list[str]:
        args = [
            "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", str(self.directory),
            "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always",
            "--daemonize", "no", "--logfile", str(self.directory / "redis.log"),
        ]
        if self.replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(self.replica_of.port)]
        return args

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-command, as a crashed Redis does."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing answers (an unreachable Redis)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()


class RedisSentinel(RedisServer):
    """One Sentinel watching `master` as service `service`, quick to fail over (quorum 1: it alone decides)."""

    def __init__(self, directory: Path, master: RedisServer, service: str = "mymaster", *, down_after_ms: int = 500) -> None:
        super().__init__(directory)
        self.master, self.service, self.down_after_ms = master, service, down_after_ms

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.port}/{self.service}/0"

    def args(self) -> list[str]:
        conf = self.directory / "sentinel.conf"  # Sentinel rewrites its config file: one of its own
        conf.write_text("\n".join([
            f"port {self.port}", "bind 127.0.0.1", f"dir {self.directory}", f"logfile {self.directory / 'redis.log'}",
            f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 1",
            f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}",
            f"sentinel failover-timeout {self.service} 2000", "",
        ]))
        return [str(conf), "--sentinel"]
