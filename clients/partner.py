"""``AsyncPartner``: a partner node's client for the broker (§8). ``Partner`` is its sync twin.

Every request is signed (RFC 9421, the partner's Ed25519 key). ``publish`` asks the broker who
is entitled, seals for exactly those partners and posts; ``subscribe`` yields reports that were
verified against the directory and decrypted with this node's key.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from httpx_sse import EventSource

from clients.errors import (
    DeniedError,
    EnvelopeError,
    TransportError,
    error_for_status,
)
from clients.httpsig import sign_as
from clients.protocol.encoding import b64d
from clients.protocol.envelope import STIX_CONTENT_TYPE, open, seal
from clients.protocol.identity import Identity, KeyRecord, Registry
from clients.protocol.label import Label, Scheme
from clients.protocol.receipt import Receipt, verify_receipt

log = logging.getLogger("tearline.client")


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Directory:
    """What the broker publishes: partners and keys, the marking scheme, its own receipt key."""

    registry: Registry
    scheme: Scheme
    broker_kid: str
    broker_public: bytes

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Directory:
        s = data["scheme"]
        return cls(
            registry=Registry.from_dicts(data["partners"]),
            scheme=Scheme(
                policy=s["policy"],
                levels=tuple(s["levels"]),
                caveats=frozenset(s["caveats"]),
                groups={g: frozenset(m) for g, m in s["groups"].items()},
            ),
            broker_kid=data["broker"]["kid"],
            broker_public=b64d(data["broker"]["public"]),
        )


@dataclass(frozen=True)
class PreviewDecision:
    decision: str
    agreement: str | None = None
    reason: str | None = None
    keys: tuple[KeyRecord, ...] = ()

    @property
    def granted(self) -> bool:
        return self.decision == "grant"


@dataclass
class Report:
    """A verified, decrypted report from the inbox. Call :meth:`ack` once it is handled."""

    id: str
    originator: str
    created: datetime
    label: Label
    content_type: str
    payload: bytes
    entry_id: str
    _node: AsyncPartner = field(repr=False)

    def json(self) -> Any:
        return json.loads(self.payload)

    async def ack(self) -> None:
        await self._node.ack([self.entry_id])


@dataclass
class Recall:
    """A notice that the originator recalled report ``id``, which this node received: delete
    it and whatever was derived from it. Call :meth:`ack` once done."""

    id: str
    originator: str
    entry_id: str
    _node: AsyncPartner = field(repr=False)

    async def ack(self) -> None:
        await self._node.ack([self.entry_id])


@dataclass
class Gap:
    """A notice that retention dropped ``lost`` entries of this node's inbox, older than entry
    ``before``, that it never acknowledged: ask their originators, or accept the loss."""

    lost: int
    before: str
    entry_id: str
    _node: AsyncPartner = field(repr=False)

    @property
    def id(self) -> str:
        return f"gap-{self.before}"

    async def ack(self) -> None:
        await self._node.ack([self.entry_id])


@dataclass(frozen=True)
class Recalled:
    """What a recall did: copies withdrawn before delivery, and recipients notified."""

    report_id: str
    withdrawn: tuple[str, ...]
    notified: tuple[str, ...]


Delivery = Report | Recall | Gap


class AsyncPartner:
    def __init__(
        self,
        base_url: str,
        identity: Identity,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 30.0,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.identity = identity
        self._clock = clock
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), transport=transport, timeout=timeout_s
        )
        self._directory: Directory | None = None

    async def __aenter__(self) -> AsyncPartner:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- signed HTTP ----------------------------------------------------------------------

    def _signed(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        body: bytes | None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Request:
        request = self._http.build_request(
            method, path, params=params, content=body, headers=headers
        )
        request.headers.update(
            sign_as(
                self.identity, method, str(request.url), dict(request.headers), body,
                now=self._clock(),
            )
        )  # fmt: skip
        return request

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: bytes | None = None,
        timeout_s: float | None = None,
    ) -> httpx.Response:
        headers = {"content-type": "application/json"} if body is not None else None
        request = self._signed(method, path, params, body, headers)
        if timeout_s is not None:
            request.extensions["timeout"] = httpx.Timeout(timeout_s).as_dict()
        try:
            response = await self._http.send(request)
        except httpx.HTTPError as exc:
            raise TransportError(f"{method} {path} failed: {exc}") from exc
        _raise_for_error(response)
        return response

    async def _json(self, method: str, path: str, payload: Any = None, **kw: Any) -> Any:
        body = json.dumps(payload).encode() if payload is not None else None
        return (await self._send(method, path, body=body, **kw)).json()

    # --- what a partner does --------------------------------------------------------------

    async def directory(self, *, refresh: bool = False) -> Directory:
        if self._directory is None or refresh:
            self._directory = Directory.from_dict(await self._json("GET", "/v1/partners"))
        return self._directory

    async def agreements(self) -> list[dict[str, Any]]:
        data = await self._json("GET", "/v1/agreements")
        return list(data["agreements"])

    async def preview(self, label: Label, *, suite: str = "classic") -> dict[str, PreviewDecision]:
        data = await self._json(
            "POST", "/v1/releasability/preview", {"label": label.to_dict(), "suite": suite}
        )
        return {
            pid: PreviewDecision(
                decision=d["decision"],
                agreement=d.get("agreement"),
                reason=d.get("reason"),
                keys=tuple(KeyRecord.from_dict(k) for k in d.get("keys", [])),
            )
            for pid, d in data["partners"].items()
        }

    async def publish(
        self,
        payload: bytes | str | Mapping[str, Any],
        label: Label,
        *,
        suite: str = "classic",
        content_type: str = STIX_CONTENT_TYPE,
        only: Iterable[str] | None = None,
    ) -> Receipt:
        """Seal ``payload`` for every partner the broker says is entitled (or only those in
        ``only``: an originator may share with fewer, never more) and post it."""
        if isinstance(payload, Mapping):
            payload = json.dumps(payload, separators=(",", ":")).encode()
        elif isinstance(payload, str):
            payload = payload.encode()
        decisions = await self.preview(label, suite=suite)
        wanted = set(only) if only is not None else None
        recipients = [
            (pid, d.keys[0])
            for pid, d in sorted(decisions.items())
            if d.granted and d.keys and (wanted is None or pid in wanted)
        ]
        if not recipients:
            denied = {p: d.reason for p, d in decisions.items() if not d.granted}
            raise DeniedError(
                "no partner is entitled to a report with this label",
                code="no_recipients",
                details={"denied": denied},
            )
        envelope = seal(
            payload,
            label,
            recipients,
            self.identity,
            now=self._clock(),
            suite=suite,
            content_type=content_type,
        )
        return await self.post_envelope(envelope)

    async def post_envelope(self, envelope: bytes) -> Receipt:
        """Post an envelope sealed elsewhere; returns the broker's receipt, signature checked."""
        signed = (await self._send("POST", "/v1/reports", body=envelope)).json()
        directory = await self.directory()
        return verify_receipt(signed, directory.broker_kid, directory.broker_public)

    async def inbox(
        self, *, limit: int = 10, wait_s: float = 0, consumer: str = "default"
    ) -> list[Delivery]:
        """One long poll: up to ``limit`` reports (or recall notices), waiting up to ``wait_s``
        for the first."""
        data = await self._json(
            "GET",
            "/v1/inbox",
            params={"limit": limit, "wait": wait_s, "consumer": consumer},
            timeout_s=wait_s + 30,
        )
        out = []
        for entry in data["entries"]:
            report = await self._open(entry)
            if report is not None:
                out.append(report)
        return out

    async def recall(self, report_id: str) -> Recalled:
        """Recall a report this node posted: undelivered copies are withdrawn, recipients that
        had it get a :class:`Recall` notice."""
        data = await self._json("POST", f"/v1/reports/{report_id}/recall")
        return Recalled(data["report_id"], tuple(data["withdrawn"]), tuple(data["notified"]))

    async def ack(self, entry_ids: Iterable[str]) -> int:
        ids = list(entry_ids)
        if not ids:
            return 0
        return int((await self._json("POST", "/v1/inbox/ack", {"ids": ids}))["acked"])

    async def subscribe(self, *, consumer: str = "default") -> AsyncIterator[Delivery]:
        """Reports (and recall notices) as they arrive over Server-Sent Events, resuming after a
        dropped connection from the last event seen. A report seen twice is yielded once."""
        last_event_id: str | None = None
        seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        while True:
            headers = {"accept": "text/event-stream", "cache-control": "no-store"}
            if last_event_id:
                headers["last-event-id"] = last_event_id
            request = self._signed("GET", "/v1/inbox/stream", {"consumer": consumer}, None, headers)
            # Heartbeats arrive well within a minute; silence that long means a dead link.
            request.extensions["timeout"] = httpx.Timeout(30.0, read=60.0).as_dict()
            try:
                response = await self._http.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise TransportError(f"cannot reach the broker: {exc}") from exc
            try:
                if not response.is_success:
                    await response.aread()
                    _raise_for_error(response)
                async for event in EventSource(response).aiter_sse():
                    if event.event not in ("report", "recall", "gap"):
                        continue
                    last_event_id = event.id or last_event_id
                    report = await self._open(json.loads(event.data))
                    if report is None:
                        continue
                    key = (event.event, report.id)
                    if key in seen:  # redelivered after a reconnect: already handled
                        await report.ack()
                        continue
                    seen[key] = None
                    if len(seen) > 10_000:
                        seen.popitem(last=False)
                    yield report
            except (httpx.TransportError, httpx.StreamError) as exc:
                log.warning("inbox stream dropped (%s); reconnecting", exc)
            finally:
                await response.aclose()

    async def _open(self, entry: Mapping[str, Any]) -> Delivery | None:
        if entry.get("kind") == "recall":
            return Recall(entry["report_id"], entry["originator"], entry["entry_id"], self)
        if entry.get("kind") == "gap":
            gap = entry["gap"]
            return Gap(int(gap["lost"]), gap["before"], entry["entry_id"], self)
        directory = await self.directory()
        try:
            opened = open(
                entry["envelope"].encode(),
                self.identity,
                directory.registry,
                directory.scheme,
                now=self._clock(),
            )
        except EnvelopeError as exc:
            # Left unacknowledged: the broker redelivers it, then dead-letters it for the operator.
            log.warning("report %s did not verify or open: %s", entry.get("report_id"), exc.reason)
            return None
        return Report(
            opened.id,
            opened.originator,
            opened.created,
            opened.label,
            opened.content_type,
            opened.payload,
            entry["entry_id"],
            self,
        )


def _raise_for_error(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        error = response.json()["error"]
        code, message, details = error["code"], error["message"], error.get("details")
    except Exception:
        code, message, details = "http_error", f"HTTP {response.status_code}", None
    raise error_for_status(response.status_code)(message, code=code, details=details)
