"""Peer baseline: the OASIS TAXII 2.1 reference server, medallion 3 (memory backend), taking
one STIX 2.1 indicator per POST, driven by wrk.

    .venv/bin/python -m bench.peers.medallion [--connections N] [--seconds S]

medallion lives in its own venv under bench/.cache, never in the project's dependencies.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent.parent
API_ROOT, COLLECTION = "api1", "91a7b528-80eb-42ed-a74d-c6fbd5a26116"
USER, PASSWORD = "bench", "bench-password"
TEST_NETS = ("192.0.2", "198.51.100", "203.0.113")  # documentation-only addresses (RFC 5737)
TAXII = "application/taxii+json;version=2.1"
HEADERS = {
    "Accept": TAXII,
    "Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
}
# medallion's CLI is Flask's threaded development server; silence werkzeug's per-request
# access log so the peer is not charged for logging the broker benchmark turns off.
RUNNER = (
    "import logging, sys; logging.getLogger('werkzeug').setLevel(logging.WARNING); "
    "from medallion.scripts.run import main; main()"
)


def _medallion_version(python: Path) -> str | None:
    probe = [str(python), "-c", "import medallion; print(medallion.__version__)"]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=60)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def ensure_venv(cache_dir: Path) -> Path:
    """The python of a venv holding medallion 3, created on first use and reused after."""
    venv = cache_dir / "medallion-venv"
    python = venv / "bin" / "python"
    version = _medallion_version(python) if python.exists() else None
    if version is not None and version.startswith("3."):
        return python
    cache_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    install = [str(python), "-m", "pip", "install", "-q", "medallion>=3,<4"]
    subprocess.run(install, check=True)
    return python


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_medallion(python: Path, port: int, tmp: Path) -> subprocess.Popen[bytes]:
    """Start medallion on 127.0.0.1:port (one API root, one writable collection, one user)."""
    data = {
        "/discovery": {"title": "bench", "api_roots": [f"http://127.0.0.1:{port}/{API_ROOT}/"]},
        API_ROOT: {
            "information": {"title": "bench", "versions": [TAXII], "max_content_length": 10**7},
            "status": [],
            "collections": [
                {"id": COLLECTION, "title": "bench", "can_read": True, "can_write": True,
                 "media_types": [TAXII], "objects": [], "manifest": []},
            ],
        },
    }  # fmt: skip
    (tmp / "data.json").write_text(json.dumps(data))
    config = {
        "backend": {
            "module": "medallion.backends.memory_backend",
            "module_class": "MemoryBackend",
            "filename": str(tmp / "data.json"),
        },
        "users": {USER: PASSWORD},
        # One page holds every stored object, so a single manifest GET counts them.
        "taxii": {"max_page_size": 10**7},
    }
    (tmp / "config.json").write_text(json.dumps(config))
    command = [str(python), "-c", RUNNER, "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "WARN", str(tmp / "config.json")]  # fmt: skip
    log = (tmp / "medallion.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            url = f"http://127.0.0.1:{port}/taxii2/"
            if httpx.get(url, headers=HEADERS, timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"medallion did not start; see {tmp / 'medallion.log'}")


def stix_objects(n: int) -> list[dict[str, Any]]:
    """n distinct STIX 2.1 indicators of about 600 bytes each."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return [
        {
            "type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
            "created": now, "modified": now, "name": f"Benchmark indicator {i:07d}",
            "description": "Address seen beaconing to a known command-and-control host during "
            "a simulated intrusion; generated for throughput measurement only.",
            "indicator_types": ["malicious-activity"],
            "pattern": f"[ipv4-addr:value = '{TEST_NETS[i // 254 % 3]}.{1 + i % 254}']",
            "pattern_type": "stix", "valid_from": now, "confidence": 70,
            "labels": ["benchmark", "c2"],
        }
        for i in range(n)
    ]  # fmt: skip


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def measure(
    objects: list[dict[str, Any]], *, connections: int, seconds: float, cache_dir: Path
) -> dict[str, Any]:
    """POST the objects to medallion one per request with wrk; rates, latency and CPU."""
    python = ensure_venv(cache_dir)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp, port = Path(tmp_name), _free_port()
        requests = tmp / "requests.txt"
        requests.write_text("".join(json.dumps({"objects": [o]}) + "\n" for o in objects))
        server = run_medallion(python, port, tmp)
        duration = max(1, round(seconds))  # wrk takes whole seconds only ("-d1.5s" is refused)
        try:
            path = f"/{API_ROOT}/collections/{COLLECTION}"
            command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency",
                       "--timeout", "30s", "-s", str(HERE / "load/medallion.lua"),
                       f"http://127.0.0.1:{port}{path}/objects/", "--",
                       str(requests), HEADERS["Authorization"]]  # fmt: skip
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            server_before = _cpu_seconds(server.pid)
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            server_cpu = _cpu_seconds(server.pid) - server_before
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            manifest = httpx.get(f"http://127.0.0.1:{port}{path}/manifest/", headers=HEADERS,
                                 timeout=60).raise_for_status().json()  # fmt: skip
        finally:
            server.terminate()
            server.wait(10)
    return {
        "tool": "wrk",
        "connections": connections,
        "seconds": duration,
        **_parse_wrk(output),
        "stored": len(manifest.get("objects", [])),
        "loadgen_cpu_s": round(_cpu(after) - _cpu(before), 3),
        "server_cpu_s": round(server_cpu, 3),
        "medallion_version": _medallion_version(python),
    }


def _parse_wrk(output: str) -> dict[str, Any]:
    def find(pattern: str) -> tuple[str, ...]:
        match = re.search(pattern, output, re.M)
        if match is None:
            raise RuntimeError(f"no {pattern!r} in wrk's output:\n{output}")
        return match.groups()

    (total,), (elapsed,) = find(r"(\d+) requests in"), find(r"requests in ([\d.]+)s")
    ok, sent, available = map(int, find(r"medallion.lua: ok=(\d+) sent=(\d+) available=(\d+)"))
    percentiles = re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)$", output, re.M)
    latency = {p: _ms(v, u) for p, v, u in percentiles}
    errors = re.search(r"Socket errors: (.*)", output)
    return {
        "objects_per_s": round(ok / float(elapsed), 1),
        "requests": int(total),
        "non_2xx": int(total) - ok,
        "socket_errors": errors.group(1) if errors else None,
        "latency_p50_ms": latency.get("50"),
        "latency_p99_ms": latency.get("99"),
        "requests_exhausted": sent > available,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--cache-dir", type=Path, default=HERE / ".cache")
    args = parser.parse_args()
    # Far more than medallion can take in the time (it manages tens per second), so every
    # request carries a new object; the result says if the file ran out anyway.
    objects = stix_objects(int(args.seconds * 400) + 100)
    result = measure(
        objects, connections=args.connections, seconds=args.seconds, cache_dir=args.cache_dir
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
