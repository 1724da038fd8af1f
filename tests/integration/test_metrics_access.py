"""``/metrics`` is for operators (issue 16, item 16), against a real broker over real HTTP.

Its counters show how the traffic moves (reports accepted, entries delivered), which a partner
must not watch for the others. The broker's listener serves them to an RFC 9421-signed
operator request only; Prometheus, which cannot sign, scrapes the listener that
``TEARLINE_METRICS_PORT`` opens, on loopback by default (``tearline serve`` with
``--workers 2`` scraping it: tests/integration/test_broker_processes.py).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx
import pytest

from tearline.broker.metrics import metrics_listener
from tearline.broker.runner import free_port
from tearline.clients.httpsig import sign_as
from tearline.clients.partner import AsyncPartner
from tests.integration.conftest import RunningBroker, me
from tests.integration.test_adversarial import USA_ONLY, snapshot

ACCEPTED = re.compile(r'^tearline_reports_total\{outcome="accepted"\} (\S+)$', re.MULTILINE)


def get_metrics(broker: RunningBroker, who: str | None) -> httpx.Response:
    url = broker.url + "/metrics"
    headers = sign_as(me(who), "GET", url, {}, None, now=datetime.now(UTC)) if who else {}
    return httpx.get(url, headers=headers, timeout=10)


@pytest.mark.parametrize(
    ("who", "code"),
    [
        pytest.param(None, "signature_missing", id="unsigned"),
        pytest.param("GBR", "unknown_key", id="a-partner-that-posts"),
        pytest.param("USA", "unknown_key", id="a-partner-that-receives"),
        pytest.param("DEU", "unknown_key", id="a-partner-with-no-agreement"),
    ],
)
async def test_metrics_are_not_served_to_partners(
    broker: RunningBroker, who: str | None, code: str
) -> None:
    async with AsyncPartner(broker.url, me("GBR")) as gbr:
        await gbr.publish(b"{}", USA_ONLY, content_type="text/plain")  # traffic to watch
    before = snapshot(broker.redis())

    refused = get_metrics(broker, who)

    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["code"] == code
    assert "tearline_reports_total" not in refused.text
    assert snapshot(broker.redis()) == before
    # The operator reads them on the broker's listener, signed.
    served = get_metrics(broker, "OPS-HQ")
    assert served.status_code == 200, served.text
    assert served.headers["content-type"].startswith("text/plain")
    assert float(ACCEPTED.findall(served.text)[0]) >= 1


async def test_prometheus_scrapes_its_own_loopback_listener(broker: RunningBroker) -> None:
    # The listener `tearline serve` opens for TEARLINE_METRICS_PORT, in this process (where the
    # test broker counts), on its default host.
    with metrics_listener("127.0.0.1", free_port()) as server:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        base = f"http://127.0.0.1:{port}"
        first = float(ACCEPTED.findall(httpx.get(base + "/metrics", timeout=10).text)[0])
        async with AsyncPartner(broker.url, me("GBR")) as gbr:
            await gbr.publish(b"{}", USA_ONLY, content_type="text/plain")
        scraped = httpx.get(base + "/metrics", timeout=10)
        assert scraped.status_code == 200
        assert float(ACCEPTED.findall(scraped.text)[0]) == first + 1
        # Nothing else is served there: not the API, not its documentation.
        for path in ("/v1/inbox", "/openapi.json", "/"):
            assert httpx.get(base + path, timeout=10).status_code == 404, path
