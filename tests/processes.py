"""Real broker processes for fault tests: ``tearline serve`` started, SIGKILLed and restarted.

The broker runs as the operator runs it (``tearline serve``, on a Redis given by ``REDIS_URL``),
in its own process on a fixed loopback port, so a restart comes back where clients left it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import httpx

from tearline.broker.embedded import free_port


class BrokerProcess:
    """One ``tearline serve`` process; ``kill()`` is SIGKILL, ``stop()`` is SIGTERM. With
    ``redis_url=None`` it runs its own embedded redis-server in ``data_dir/redis``."""

    def __init__(
        self,
        *,
        redis_url: str | None,
        policies: Path,
        data_dir: Path,
        port: int | None = None,
        workers: int = 1,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        # Run in the child before exec: e.g. a lowered RLIMIT_NOFILE, as a host might set it.
        self._preexec_fn = preexec_fn
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.log_path = log_path or data_dir / f"broker-{self.port}.log"
        self._env = {
            **os.environ,
            "TEARLINE_POLICIES_DIR": str(policies),
            "TEARLINE_DATA_DIR": str(data_dir),
            **(env or {}),
        }
        self._env.pop("TEARLINE_REDIS_URL", None)
        self._env.pop("REDIS_URL", None)
        if redis_url is not None:  # None: `tearline serve` starts its embedded redis-server
            self._env["REDIS_URL"] = redis_url
        self._process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def __enter__(self) -> BrokerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def command(self) -> list[str]:
        serve = "from tearline.clients.cli import main; main()"
        port, workers = str(self.port), str(self.workers)
        return [sys.executable, "-c", serve, "serve", "--port", port, "--workers", workers]

    def start(self, *, ready_timeout_s: float = 60.0) -> BrokerProcess:
        """Start and return once ``/healthz`` answers (Redis may be away: that is a 503 later)."""
        assert self._process is None or self._process.poll() is not None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.command(),
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=self._preexec_fn,
            )
        self.starts += 1
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"broker exited at start; see {self.log_path}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"broker did not answer within {ready_timeout_s} s; see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL the whole process group (the supervisor and its workers), as a crash would."""
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
        if self._process is not None:
            self._process.wait()

    def terminate(self) -> None:
        """SIGTERM, as an orchestrator stopping the broker sends; returns at once."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float) -> int:
        assert self._process is not None
        return self._process.wait(timeout=timeout_s)

    def stop(self, timeout_s: float = 20.0) -> None:
        if self._process is None:
            return
        self.terminate()
        try:
            self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
        self._process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
