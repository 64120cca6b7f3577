"""A throwaway ``redis-server`` on a free loopback port (Debian's package, ``scripts/ensure-redis.sh``)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tests.pg import free_port

if TYPE_CHECKING:
    import redis

REDIS_SERVER = shutil.which("redis-server")
MISSING = "redis-server is not installed: run scripts/ensure-redis.sh (make test does)"


@dataclass
class RedisServer:
    """Where a started server listens, and how to stop and restart it on the same port."""

    host: str
    port: int
    password: str | None
    root: Path
    process: subprocess.Popen[bytes] | None = None
    tls: tuple[str, str] | None = None  # (certificate, key): the server speaks TLS only

    def start(self) -> None:
        assert REDIS_SERVER, MISSING
        args = [REDIS_SERVER, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.root)]
        if self.tls:
            cert, key = self.tls
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", cert, "--tls-key-file", key]
            args += ["--tls-ca-cert-file", cert, "--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        if self.password:
            args += ["--requirepass", self.password]
        log = (self.root / "redis.log").open("ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        import redis

        if self.tls:
            client = redis.Redis(
                host="localhost", port=self.port, password=self.password, ssl=True, ssl_ca_certs=self.tls[0]
            )
        else:
            client = self.client()
        deadline = time.monotonic() + 30
        try:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited: {(self.root / 'redis.log').read_text()[-2000:]}")
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def client(self) -> redis.Redis:
        """A plain client to the server (not for TLS servers)."""
        import redis

        return redis.Redis(host=self.host, port=self.port, password=self.password, socket_connect_timeout=1)


@contextmanager
def redis_server(password: str | None = None, tls: tuple[str, str] | None = None) -> Iterator[RedisServer]:
    """Yield a running server (no persistence); it is stopped and its directory removed even on failure."""
    root = Path(tempfile.mkdtemp(prefix="peak-redis-"))
    server = RedisServer("127.0.0.1", free_port(), password, root, tls=tls)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
