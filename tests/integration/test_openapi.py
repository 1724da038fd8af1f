"""The OpenAPI document is accurate: property-based requests from it (schemathesis), signed as
partners and operators sign them, with junk headers added, never get a 5xx, and every answer
matches the documented responses: status, content type, headers and body.

Every operation is fuzzed, the event stream too (each one read until the broker ends it, half a
second in), with data that fits the document and with data that does not. Each request is
signed last, over the method, the URL and the body as sent, so the junk headers ride along
unsigned, as a proxy's would. About one case in eight then has its signature tampered with (a
character changed, the field cut short, replaced with junk, doubled or dropped) and must get a
401. With the security schemes declared, schemathesis also sends every accepted request again
without its signature and with a made-up one, and expects a 401 both times. The default run
sends 1,150 cases; ``make heavy`` sends twice that times ``TEARLINE_HEAVY_SCALE``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tearline.clients.httpsig import LABEL, sign_as
from tests.integration.conftest import PARTNERS, UNLIMITED, RunningBroker, me, running_broker

SCALE: Final = int(os.environ.get("TEARLINE_HEAVY_SCALE", "1"))
# Examples per operation and generation mode. The 10 operations with parameters or a body take
# both; the other 6 have nothing to make invalid (the signature is Tamper's), so 10 * 85 + 6 * 50
# cases, each a request (more when schemathesis sends one again without its signature).
EXAMPLES: Final = {GenerationMode.POSITIVE: 50, GenerationMode.NEGATIVE: 35}
LEAST_CASES: Final = 1000

OPERATOR_PATHS: Final = ("/v1/audit", "/v1/dead-letters", "/v1/status", "/metrics")
PUBLIC_PATHS: Final = ("/healthz", "/readyz")
STREAM: Final = "/v1/inbox/stream"
STREAM_LIFETIME_S: Final = 0.05

# Headers a junk header must not be: those that frame the message (a fuzzed Content-Length is a
# test of the HTTP parser, not of the API) and the signature's own, which the signer sets.
FRAMING: Final = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "upgrade", "expect", "te",
     "trailer", "keep-alive", "proxy-connection", "signature", "signature-input"}
)  # fmt: skip
# Headers something in the stack may read: they are picked often, with junk values.
READ_SOMEWHERE: Final = (
    "accept", "accept-encoding", "accept-language", "authorization", "cache-control",
    "content-digest", "content-type", "cookie", "forwarded", "if-match", "if-none-match",
    "if-modified-since", "last-event-id", "origin", "range", "referer", "user-agent",
    "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip", "x-request-id",
)  # fmt: skip
TOKEN: Final = r"\A[A-Za-z0-9!#$%&'*+.^_`|~-]{1,40}\Z"  # RFC 9110 field names
junk_names = st.one_of(st.sampled_from(READ_SOMEWHERE), st.from_regex(TOKEN)).filter(
    lambda name: name.lower() not in FRAMING
)
# Field values as RFC 9110 allows them: visible ASCII, spaces inside, obs-text (Latin-1).
junk_values = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=80
).map(str.strip)  # requests refuses a value that starts with whitespace (Unicode's: NEL too)
junk_headers = st.dictionaries(junk_names, junk_values, max_size=6)

SIGNED_FIELDS: Final = ("signature", "signature-input", "content-digest")


@dataclass(frozen=True)
class Tamper:
    """What to do to one of the signature's fields once the request is signed."""

    field: str
    how: Literal["drop", "junk", "truncate", "flip", "second"]
    junk: str = ""
    at: int = 0

    def apply(self, headers: MutableMapping[str, str]) -> bool:
        """Tamper with ``headers``; whether anything changed."""
        value = headers.get(self.field)
        if value is None:
            if self.how != "junk":
                return False
            new: str | None = self.junk
        elif self.how == "drop":
            new = None
        elif self.how == "junk":
            new = self.junk
        elif self.how == "truncate":
            new = value[: self.at]
        elif self.how == "flip" and not value:
            return False  # an empty field (a junk header's) has no character to change
        elif self.how == "flip":
            # Inside the base64 of the signature, off its last character (whose low bits are
            # padding): a change there is a change of the bytes; anywhere in the other fields.
            i = 6 + self.at % 80 if self.field == "signature" else self.at % len(value)
            new = value[:i] + ("A" if value[i] != "A" else "B") + value[i + 1 :]
        else:  # a second signature beside the first, under another label
            new = f"{value}, {value.replace(LABEL, 'sig2', 1)}"
        if new == value:
            return False
        if value is not None:
            del headers[self.field]
        if new is not None:
            headers[self.field] = new
        return True


# Hypothesis favours the first branch: the subtlest tampering first, the bluntest last.
tampers = st.one_of(
    st.builds(Tamper, st.sampled_from(SIGNED_FIELDS), st.just("flip"), at=st.integers(0, 150)),
    st.builds(Tamper, st.sampled_from(SIGNED_FIELDS), st.just("truncate"), at=st.integers(0, 150)),
    st.builds(Tamper, st.sampled_from(SIGNED_FIELDS), st.just("junk"), junk=junk_values),
    st.builds(Tamper, st.sampled_from(SIGNED_FIELDS[:2]), st.just("second")),
    st.builds(Tamper, st.sampled_from(SIGNED_FIELDS), st.just("drop")),
)
# One case in five draws a tampering (one in eight changes something: Content-Digest only exists
# with a body); the others must reach the handlers.
maybe_tamper = st.sampled_from((False, False, False, False, True)).flatmap(
    lambda tampered: tampers if tampered else st.none()
)


class Signature(requests.auth.AuthBase):
    """Signs the prepared request exactly as the SDK does (RFC 9421), last, over what is sent
    (junk headers included, uncovered, as a proxy's would be): a partner's key for partners'
    operations, the operator OPS-HQ's for operators' (the public ones too: they ignore it); then
    applies ``tamper``, if any."""

    def __init__(self, partner: str, tamper: Tamper | None, *, required: bool) -> None:
        self.partner = partner
        self.tamper = tamper
        self.required = required  # the document says the operation is signed
        self.must_refuse = False  # set once the request is signed and tampered with

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        raw = request.body
        body = raw.encode() if isinstance(raw, str) else raw if isinstance(raw, bytes) else None
        path = urlsplit(str(request.url)).path
        signer = me("OPS-HQ") if path.startswith(OPERATOR_PATHS) else me(self.partner)
        request.headers.update(
            sign_as(
                signer, str(request.method), str(request.url), dict(request.headers),
                body or None, now=datetime.now(UTC),
            )
        )  # fmt: skip
        if self.tamper is not None and self.tamper.apply(request.headers):
            # Content-Digest is covered only when there is a body; without one it is just
            # another header, which the broker does not read.
            covered = self.tamper.field != "content-digest" or bool(body)
            self.must_refuse = self.required and covered
        return request


@pytest.fixture
def fuzzed(redis_server: Any, tmp_path: Path) -> Iterator[RunningBroker]:
    """A broker whose request budgets no fuzz run meets, which lets each partner hold as many
    streams as the fuzz opens, and which ends each stream after 50 ms, as it ends any stream
    past its lifetime (a stream's 200 and headers are what is checked here; each stream open
    for half a second made up half of the run); the product's defaults are checked elsewhere."""
    with running_broker(
        redis_server.url,
        tmp_path,
        **UNLIMITED,
        blocking_readers_per_partner=64,
        stream_max_lifetime_s=STREAM_LIFETIME_S,
    ) as running:
        yield running


def no_long_poll(query: dict[str, Any]) -> dict[str, Any]:
    """``query`` with a valid ``wait`` made 0: no long polls in a fuzz run (an invalid one
    stays, for the broker to refuse)."""
    try:
        wait = float(query["wait"])
    except (KeyError, TypeError, ValueError):
        return query
    return {**query, "wait": 0} if 0 < wait <= 60 else query


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: Any, value: Any) -> bytes:
    # POST /v1/reports:batch: its body is a string of lines, sent as it is.
    assert isinstance(value, str), value
    return value.encode()


def _ndjson_only(raw: dict[str, Any]) -> bool:
    content = raw.get("requestBody", {}).get("content", {})
    return set(content) == {"application/x-ndjson"}


def fuzz(broker: RunningBroker, scale: int) -> dict[str, int]:
    """Run every operation of the document through schemathesis; the cases sent, by status."""
    schema = schemathesis.openapi.from_url(f"{broker.url}/openapi.json")
    # The signature is the signer's to make, and Tamper's to break: schemathesis leaves the
    # header alone (its negative cases go to the parameters and bodies instead).
    schema.config.generation.update(with_security_parameters=False)
    operations = [op.ok() for op in schema.get_all_operations()]  # type: ignore[union-attr]
    assert {op.path for op in operations} >= {
        "/v1/reports",
        "/v1/releasability/preview",
        "/v1/inbox",
        STREAM,
        "/v1/inbox/ack",
        "/v1/dead-letters",
        "/v1/dead-letters/{partner}/{dead_id}",
        "/v1/dead-letters/{partner}/{dead_id}/replay",
        "/v1/status",
        "/metrics",
        *PUBLIC_PATHS,
    }
    statuses: dict[str, int] = {}
    for operation in operations:
        for mode, examples in EXAMPLES.items():
            raw = operation.definition.raw
            if mode is GenerationMode.NEGATIVE and not (
                raw.get("parameters") or raw.get("requestBody")
            ):
                continue
            if mode is GenerationMode.NEGATIVE and _ndjson_only(raw):
                # Any bytes are a string of lines: a body that "violates type: string" has no
                # NDJSON form, so negative cases would only be positive ones relabelled. The
                # batch's refusals are tested by name in test_batch_ingest.py.
                continue

            @given(
                case=operation.as_strategy(generation_mode=mode),
                junk=junk_headers,
                partner=st.sampled_from(sorted(PARTNERS)),
                tamper=maybe_tamper,
            )
            @settings(
                max_examples=examples * scale,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            )
            def check(case: Any, junk: dict[str, str], partner: str, tamper: Tamper | None) -> None:
                declared = {name.lower() for name in case.headers or {}}
                case.headers = {
                    **{k: v for k, v in junk.items() if k.lower() not in declared},
                    **(case.headers or {}),
                }
                if case.path == "/v1/inbox" and isinstance(case.query, dict):
                    case.query = no_long_poll(case.query)
                signed = bool(case.operation.definition.raw.get("security"))
                auth = Signature(partner, tamper, required=signed)
                # An event stream ends after its lifetime; the read timeout is far past it
                # (and past the heartbeat), so it catches a stall, never a slow machine.
                # A schema-valid envelope or label is still refused when its cryptography or
                # its policy says no; that check would demand otherwise, so it is left out.
                response = case.call_and_validate(
                    base_url=broker.url,
                    auth=auth,
                    excluded_checks=[positive_data_acceptance],
                    timeout=10,
                )
                if auth.must_refuse:
                    assert response.status_code == 401, (tamper, response.status_code)
                key = f"{response.status_code}"
                statuses[key] = statuses.get(key, 0) + 1

            check()
    return statuses


def test_signed_requests_generated_from_the_openapi_document_match_it(
    fuzzed: RunningBroker,
) -> None:
    statuses = fuzz(fuzzed, scale=1)
    print(f"schemathesis: {sum(statuses.values())} cases, by status {sorted(statuses.items())}")
    assert sum(statuses.values()) >= LEAST_CASES
    assert not any(status.startswith("5") for status in statuses)
    assert {"200", "400", "404", "422"} <= statuses.keys()  # it reached the handlers


@pytest.mark.heavy
def test_many_more_signed_requests_generated_from_the_openapi_document_match_it(
    fuzzed: RunningBroker,
) -> None:
    statuses = fuzz(fuzzed, scale=2 * SCALE)
    print(f"schemathesis: {sum(statuses.values())} cases, by status {sorted(statuses.items())}")
    assert sum(statuses.values()) >= 2 * SCALE * LEAST_CASES
    assert not any(status.startswith("5") for status in statuses)
