"""``GET /metrics`` for operators: Prometheus metrics, signed like every operator request.

The counters show how the traffic moves (reports accepted, entries delivered, refusals), which
no partner may watch for the others, so the broker's listener serves them to operators only.
Prometheus cannot sign RFC 9421 requests: it scrapes the separate listener that
``TEARLINE_METRICS_PORT`` opens (:func:`broker.metrics.metrics_listener`), on loopback unless
``TEARLINE_METRICS_HOST`` says otherwise.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from tearline.broker.api.deps import Operator
from tearline.broker.metrics import render

router = APIRouter(tags=["operators"])


@router.get(
    "/metrics",
    summary="Prometheus metrics (operators only; Prometheus scrapes TEARLINE_METRICS_PORT)",
    response_class=Response,
    responses={200: {"description": "the exposition", "content": {CONTENT_TYPE_LATEST: {}}}},
)
async def metrics(operator: Operator) -> Response:
    return Response(render(), media_type=CONTENT_TYPE_LATEST)
