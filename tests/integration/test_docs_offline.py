"""``/docs`` and ``/redoc`` work on a network with no way out: every file they load comes from
the broker itself, nothing from a CDN."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.integration.conftest import RunningBroker

# src="…" and href="…" in the page, and url('…') in an inline style.
REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\(\s*['"]?([^'")]+)""")
OFFSITE = re.compile(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", re.IGNORECASE)
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_pages_load_nothing_from_elsewhere(broker: RunningBroker, page: str) -> None:
    with httpx.Client(base_url=broker.url, timeout=30) as client:
        response = client.get(page)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        html = response.text
        assert not OFFSITE.search(html), OFFSITE.findall(html)
        references = {a or b for a, b in REFERENCE.findall(html)}
        assets = {r for r in references if r.startswith("/docs/assets/")}
        assert assets, html
        for path in assets:
            asset = client.get(path)
            assert asset.status_code == 200, path
            suffix = path[path.rindex(".") :]
            assert asset.headers["content-type"].startswith(CONTENT_TYPES[suffix]), path
            assert len(asset.content) > 1000
        # And the page points at the broker's own description of the API.
        assert "/openapi.json" in html
        assert client.get("/openapi.json").status_code == 200


def test_swagger_ui_is_a_release_that_reads_openapi_3_1(broker: RunningBroker) -> None:
    with httpx.Client(base_url=broker.url, timeout=30) as client:
        version = client.get("/openapi.json").json()["openapi"]
        bundle = client.get("/docs/assets/swagger-ui-bundle.js").text
    assert version.startswith("3.1")
    # Swagger UI reads OpenAPI 3.1 from release 5 on; its bundle carries its OAS 3.1 support.
    assert "OpenAPI 3.1" in bundle or "openapi31" in bundle.lower()


def test_an_asset_that_is_not_one_is_a_404(broker: RunningBroker) -> None:
    with httpx.Client(base_url=broker.url, timeout=30) as client:
        for name in ("nope.js", "..%2Fapp.py", "%2e%2e%2fsettings.py"):
            assert client.get(f"/docs/assets/{name}").status_code == 404, name
