"""What every benchmark scenario starts: partners and their policy folder, a Redis, the broker or
the ceiling app as separate server processes, pre-signed requests, and wrk to drive them.

Every process runs on loopback on this machine. The broker is `tearline serve` itself (its
HTTP protocol, its JSON access log, its settings), pointed at the bench's Redis; the ceiling is
``bench/load/ceiling.py``, a bare FastAPI app served by the same uvicorn settings.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml

from tearline.broker.embedded import EmbeddedRedis
from tearline.clients.httpsig import sign_request, signing_key_of
from tearline.clients.protocol.envelope import seal
from tearline.clients.protocol.identity import Identity, Partner
from tearline.clients.protocol.label import Label

ROOT = Path(__file__).resolve().parent.parent
LOAD = ROOT / "bench" / "load"
#: A STIX bundle's worth of payload: the envelope is about 2.4 KiB with five recipients.
PAYLOAD = b'{"type":"bundle","id":"bundle--0","objects":[]}' + b" " * 1500
ORIGINATOR = "P000"
#: Requests are signed before a run and sent during it; the envelopes are sealed once per
#: bench and re-posted into a flushed Redis, so their age bound is widened (the check still runs).
MAX_REPORT_AGE_S = 7200


def partner_ids(n: int) -> list[str]:
    return [f"P{i:03d}" for i in range(n)]


@dataclass
class Fleet:
    """``n`` partners with real classic keys, and a policy folder in which ``P000`` may share
    RESTRICTED reports with everyone (one multilateral agreement) plus one bilateral agreement
    per partner (so the engine has ``n`` agreements to index)."""

    folder: Path
    n: int
    identities: dict[str, Identity] = field(default_factory=dict)
    registry: dict[str, Partner] = field(default_factory=dict)
    _sealed: dict[tuple[int, int], list[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        now = datetime.now(UTC)
        for pid in partner_ids(self.n):
            self.identities[pid] = Identity.generate(pid, "classic", now - timedelta(days=1))
            self.registry[pid] = Partner.from_dict(self.identities[pid].public_entry())
        write_policy(self.folder, self.identities)

    def recipients(self, count: int) -> list[str]:
        return partner_ids(self.n)[1 : count + 1]

    def envelopes(self, recipients: int, count: int) -> list[bytes]:
        """``count`` distinct envelopes from ``P000`` sealed to the first ``recipients``
        others, made once (in parallel: sealing to 20 recipients costs 4 ms) and cached."""
        cached = self._sealed.get((recipients, count))
        if cached is None:
            me = self.identities[ORIGINATOR].to_dict()
            keys = {p: self.registry[p].to_dict() for p in self.recipients(recipients)}
            halves = [(me, keys, count - count // 2), (me, keys, count // 2)]
            with ProcessPoolExecutor(2) as pool:
                cached = [e for part in pool.map(_seal_many, halves) for e in part]
            self._sealed[(recipients, count)] = cached
        return cached


def _seal_many(args: tuple[dict[str, Any], dict[str, dict[str, Any]], int]) -> list[bytes]:
    me, entries, count = args
    identity = Identity.from_dict(me)
    now = datetime.now(UTC)
    keys = []
    for pid, entry in entries.items():
        key = Partner.from_dict(entry).enc_key("classic", now)
        assert key is not None
        keys.append((pid, key))
    label = Label("RESTRICTED", list(entries), "AMBER")
    return [seal(PAYLOAD, label, keys, identity, now=now) for _ in range(count)]


def write_policy(folder: Path, identities: dict[str, Identity]) -> None:
    (folder / "agreements").mkdir(parents=True, exist_ok=True)
    scheme = {"policy": "BENCH", "levels": ["UNCLASSIFIED", "RESTRICTED"]}
    (folder / "scheme.yaml").write_text(yaml.safe_dump(scheme))
    entries = [i.public_entry() for i in identities.values()]
    (folder / "partners.yaml").write_text(yaml.safe_dump({"partners": entries}, width=1 << 16))
    ids = list(identities)
    terms: dict[str, Any] = {
        "valid_from": "2020-01-01T00:00:00Z",
        "valid_until": "2040-01-01T00:00:00Z",
    }
    everyone: dict[str, Any] = {
        "id": "all",
        "title": "bench",
        **terms,
        "ceiling": "RESTRICTED",
        "topics": ["*"],
    }
    everyone["parties"] = {p: {} for p in ids}
    (folder / "agreements" / "all.yaml").write_text(yaml.safe_dump(everyone))
    for i, pid in enumerate(ids[1:], 1):  # a ring of bilateral agreements the engine must index
        pair: dict[str, Any] = {"id": f"ring-{i}", "title": "bench", **terms}
        pair["ceiling"] = "UNCLASSIFIED"
        pair["topics"] = ["*"]
        pair["parties"] = {pid: {}, ids[(i % (len(ids) - 1)) + 1]: {}} if len(ids) > 2 else {}
        if len(pair["parties"]) == 2:
            (folder / "agreements" / f"ring-{i}.yaml").write_text(yaml.safe_dump(pair))


@contextmanager
def bench_redis(tmp: Path) -> Iterator[EmbeddedRedis]:
    """A real redis-server with AOF on, ``appendfsync everysec`` (DESIGN §7's default)."""
    with EmbeddedRedis(tmp / "redis", appendfsync="everysec") as server:
        yield server


def flush(url: str) -> None:
    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()


def redis_info(url: str, section: str) -> dict[str, Any]:
    client = redis.Redis.from_url(url)
    try:
        return dict(client.info(section))
    finally:
        client.close()


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    name: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_s(self) -> float:
        """CPU seconds used so far by the server and its worker processes (Linux /proc)."""
        return sum(_cpu_of(pid) for pid in _tree(self.process.pid))

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def _tree(pid: int) -> list[int]:
    out = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for child in children:
        out.extend(_tree(int(child)))
    return out


def _cpu_of(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_env(fleet: Fleet, redis_url: str, data: Path, port: int) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "TEARLINE_POLICIES_DIR": str(fleet.folder),
        "TEARLINE_DATA_DIR": str(data),
        "TEARLINE_PORT": str(port),
        "TEARLINE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "TEARLINE_MAX_REPORT_AGE_S": str(MAX_REPORT_AGE_S),
        # One partner drives the whole load: its per-partner budget must not be the limit.
        "TEARLINE_PARTNER_RATE_PER_S": "10000000",
        "TEARLINE_PARTNER_BURST": "10000000",
    }


def start_broker(env: dict[str, str], port: int, workers: int) -> Server:
    command = [str(Path(sys.executable).parent / "tearline"), "serve", "--workers", str(workers)]
    return _start(command, env, port, "broker")


def start_ceiling(env: dict[str, str], port: int, workers: int) -> Server:
    command = [sys.executable, str(LOAD / "ceiling.py"), str(port), str(workers)]
    return _start(command, env, port, "ceiling")


def _start(command: list[str], env: dict[str, str], port: int, name: str) -> Server:
    log = open(Path(env["TEARLINE_DATA_DIR"]).parent / f"{name}-{port}.log", "ab")  # noqa: SIM115
    process = subprocess.Popen(
        command,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        cwd=ROOT,
        stdout=log,
        stderr=log,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}; see {log.name}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return Server(process, port, name)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{name} did not become ready; see {log.name}")


def write_requests(
    path: Path,
    fleet: Fleet,
    url: str,
    bodies: Sequence[bytes],
    content_type: str = "application/json",
) -> Path:
    """The request file ``load/replay.lua`` reads: per request, its path, content type,
    Content-Digest, Signature-Input and Signature, one per line, then the body's length and the
    body. Signed now, by
    ``P000``'s SDK signer, each with its own nonce."""
    kid, private = signing_key_of(fleet.identities[ORIGINATOR], datetime.now(UTC))
    target = httpx.URL(url)
    with path.open("wb") as out:
        for body in bodies:
            headers = sign_request(
                "POST", url, {}, body, key_id=kid, private_key=private,
                created=int(time.time()), nonce=secrets.token_urlsafe(16),
            )  # fmt: skip
            lines = [target.raw_path.decode(), content_type, headers["Content-Digest"],
                     headers["Signature-Input"], headers["Signature"], str(len(body))]  # fmt: skip
            out.write("\n".join(lines).encode() + b"\n" + body + b"\n")
    return path


@dataclass(frozen=True)
class Load:
    """What wrk measured: successful requests per second, refusals, latency, its own CPU."""

    ok_per_s: float
    non_2xx: int
    sent: int
    seconds: float
    latency_ms: dict[str, float]
    loadgen_cpu_s: float
    connections: int
    exhausted: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok_per_s": round(self.ok_per_s, 1), "non_2xx": self.non_2xx, "sent": self.sent,
            "seconds": round(self.seconds, 2), "latency_ms": self.latency_ms,
            "loadgen": {"tool": "wrk", "threads": 1, "connections": self.connections,
                        "cpu_s": round(self.loadgen_cpu_s, 2)},
            "requests_exhausted": self.exhausted,
        }  # fmt: skip


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(port: int, requests: Path, count: int, seconds: float, connections: int = 64) -> Load:
    """Send the file's requests, each once and in order, on ``connections`` connections for
    at most ``seconds``; 2xx answers per second over the time wrk ran."""
    if shutil.which("wrk") is None:
        raise RuntimeError("the benchmark needs wrk (apt-get install wrk)")
    before = os.times()
    command = [
        "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
        "-s", str(LOAD / "replay.lua"), f"http://127.0.0.1:{port}", "--", str(requests),
    ]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    after = os.times()
    total = int(_grab(r"(\d+) requests in", output))
    text = _grab(r"requests in ([\d.]+(?:ms|s|m|h))", output)
    number, unit = re.fullmatch(r"([\d.]+)(ms|s|m|h)", text).groups()  # type: ignore[union-attr]
    elapsed = float(number) * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]
    refused = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    non_2xx = int(refused.group(1)) if refused else 0
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if errors and sum(map(int, errors.groups())):
        non_2xx += sum(map(int, errors.groups()))
    latency = {
        f"p{q}": round(float(v) * _UNITS[u], 3)
        for q, v, u in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)$", output, re.M)
    }
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return Load((total - non_2xx) / elapsed, non_2xx, total, elapsed, latency, cpu, connections,
                total >= count)  # fmt: skip


def _grab(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise RuntimeError(f"unexpected wrk output:\n{text}")
    return match.group(1)
