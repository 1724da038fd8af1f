"""POST /v1/reports over real HTTP (uvicorn, uvloop, httptools; wrk, 64 connections), with
1 and 2 workers, against DESIGN §10's baseline measured in the same run: a bare FastAPI
endpoint that does one XADD. Every request is a distinct signed report (3 recipients), so
nothing is served from the idempotency path; AOF is on (everysec).

    python bench/bench_http.py [--quick]        (needs wrk: apt-get install wrk)
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import yaml
from _timing import write

from broker.embedded import EmbeddedRedis
from broker.runner import free_port
from clients.httpsig import sign_request, signing_key_of
from clients.protocol.envelope import seal
from clients.protocol.identity import Identity, Partner
from clients.protocol.label import Label

HERE = Path(__file__).parent
PARTNERS = ["GBR", "USA", "CAN", "EST", "FIN", "DEU"]
PAYLOAD = b'{"type":"bundle","objects":[]}' + b" " * 1500


def write_policy(folder: Path, identities: dict[str, Identity]) -> None:
    (folder / "agreements").mkdir(parents=True)
    scheme = {"policy": "BENCH", "levels": ["UNCLASSIFIED", "RESTRICTED"]}
    (folder / "scheme.yaml").write_text(yaml.safe_dump(scheme))
    entries = [i.public_entry() for i in identities.values()]
    (folder / "partners.yaml").write_text(yaml.safe_dump({"partners": entries}, width=1 << 16))
    agreement = {
        "id": "all", "title": "bench", "valid_from": "2020-01-01T00:00:00Z",
        "valid_until": "2040-01-01T00:00:00Z", "ceiling": "RESTRICTED", "topics": ["*"],
        "parties": {p: {} for p in PARTNERS},
    }  # fmt: skip
    (folder / "agreements" / "all.yaml").write_text(yaml.safe_dump(agreement))


def signed_requests(
    path: Path, gbr: Identity, registry: dict[str, Partner], url: str, n: int
) -> None:
    now = datetime.now(UTC)
    label = Label("RESTRICTED", PARTNERS[1:4], "AMBER")
    recipients = []
    for p in PARTNERS[1:4]:
        key = registry[p].enc_key("classic", now)
        assert key is not None
        recipients.append((p, key))
    kid, private = signing_key_of(gbr, now)
    with path.open("w") as out:
        for _ in range(n):
            body = seal(PAYLOAD, label, recipients, gbr, now=datetime.now(UTC))
            headers = sign_request(
                "POST", url, {}, body, key_id=kid, private_key=private,
                created=int(time.time()), nonce=secrets.token_urlsafe(16),
            )  # fmt: skip
            out.write(f"{headers['Content-Digest']}\n{headers['Signature-Input']}\n")
            out.write(f"{headers['Signature']}\n{body.decode()}\n")


def serve(factory: str, port: int, workers: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "uvicorn", "--factory", factory, "--port", str(port),
        "--workers", str(workers), "--loop", "uvloop", "--http", "httptools",
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    process = subprocess.Popen(command, env={**os.environ, **env}, cwd=HERE.parent)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{factory} did not start")


def wrk(port: int, seconds: int, script_args: list[str]) -> tuple[float, int]:
    """Successful (2xx) requests per second, and the count of other answers."""
    command = ["wrk", "-t1", "-c64", f"-d{seconds}s", "-s", str(HERE / "load/replay.lua"),
               f"http://127.0.0.1:{port}/v1/reports", "--", *script_args]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    total = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    elapsed = float(re.search(r"requests in ([\d.]+)s", output).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    failed = int(non_2xx.group(1)) if non_2xx else 0
    return (total - failed) / elapsed, failed


def main() -> None:
    if shutil.which("wrk") is None:
        sys.exit("bench_http needs wrk: apt-get install wrk")
    seconds = 3 if "--quick" in sys.argv else 5
    now = datetime.now(UTC)
    identities = {p: Identity.generate(p, "classic", now - timedelta(days=1)) for p in PARTNERS}
    registry = {p: Partner.from_dict(i.public_entry()) for p, i in identities.items()}
    rows = []
    with (
        tempfile.TemporaryDirectory() as tmp_name,
        EmbeddedRedis(Path(tmp_name) / "redis") as redis,
    ):
        tmp = Path(tmp_name)
        write_policy(tmp / "policies", identities)
        env = {
            "REDIS_URL": redis.url,
            "TEARLINE_POLICIES_DIR": str(tmp / "policies"),
            "TEARLINE_DATA_DIR": str(tmp / "data"),
            "TEARLINE_MAX_REPORT_AGE_S": "600",  # requests are signed before the run starts
            # One partner drives the whole load: its per-partner budget must not be the limit.
            "TEARLINE_PARTNER_RATE_PER_S": "1000000",
            "TEARLINE_PARTNER_BURST": "1000000",
        }
        for workers in (1, 2):
            port = free_port()
            baseline = serve("bench.load.baseline_app:create_app", port, workers, env)
            empty = tmp / "empty.txt"
            signed_requests(
                empty, identities["GBR"], registry, f"http://127.0.0.1:{port}/v1/reports", 1
            )
            try:
                base_rps, _ = wrk(port, seconds, [str(empty)])
            finally:
                baseline.send_signal(signal.SIGINT)
                baseline.wait(30)
            port = free_port()
            broker = serve("broker.app:create_app", port, workers, env)
            try:
                requests = tmp / f"requests-{workers}.txt"
                wanted = int(base_rps * 0.4 * seconds) + 1000  # more than the broker can take
                signed_requests(
                    requests,
                    identities["GBR"],
                    registry,
                    f"http://127.0.0.1:{port}/v1/reports",
                    wanted,
                )
                rps, refused = wrk(port, seconds, [str(requests)])
            finally:
                broker.send_signal(signal.SIGINT)
                broker.wait(30)
            exhausted = rps * seconds >= wanted
            rows.append(
                {
                    "workers": workers,
                    "baseline_rps": round(base_rps),
                    "broker_rps": round(rps),
                    "ratio": round(rps / base_rps, 2),
                    "non_2xx": refused,
                    "requests_exhausted": exhausted,
                }
            )
            note = ", EXHAUSTED: sign more requests" if exhausted else ""
            print(
                f"workers {workers}: baseline {base_rps:,.0f} req/s, broker {rps:,.0f} req/s "
                f"(ratio {rps / base_rps:.2f}; non-2xx {refused}{note})"
            )
    print(f"written to {write('http', rows)}")


if __name__ == "__main__":
    main()
