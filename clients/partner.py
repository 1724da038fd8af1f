"""``AsyncPartner``: a partner node's client for the broker (§8). ``Partner`` is its sync twin.

Every request is signed (RFC 9421, the partner's Ed25519 key). ``release`` says who a report
with a label will reach and who it will not, and why; ``publish`` seals for exactly the
partners it names and posts; ``subscribe`` yields reports that were
verified against the directory and decrypted with this node's key, and keeps going through
broker restarts and store outages (see :meth:`AsyncPartner.subscribe`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import httpx
from httpx_sse import EventSource

from tearline.clients.backoff import Backoff
from tearline.clients.errors import (
    DeniedError,
    EnvelopeError,
    InputError,
    TearlineError,
    error_for_status,
)
from tearline.clients.http import SignedClient, utc_now
from tearline.clients.protocol.encoding import b64d
from tearline.clients.protocol.envelope import STIX_CONTENT_TYPE, open, seal
from tearline.clients.protocol.identity import Identity, KeyRecord, Registry
from tearline.clients.protocol.label import Label, Scheme
from tearline.clients.protocol.receipt import Receipt, verify_receipt
from tearline.clients.stix.check import check_bundle, is_stix_content_type, parse_bundle
from tearline.clients.stix.stamp import stamp
from tearline.clients.subscription import (
    StreamLost,
    Subscription,
    describe_http,
    stream_refusal,
    worth_retrying,
)
from tearline.clients.terminal import network_reason

if TYPE_CHECKING:
    # The governance core is imported by the methods that verify (a node with --root, the log
    # commands): a node that trusts its broker's directory, as `tearline publish` does by
    # default, never loads it.
    from tearline.clients.governance.log import SignedTreeHead
    from tearline.clients.governance.node import Verified
    from tearline.clients.governance.trust import TrustedState
    from tearline.clients.policy.engine import Policy

log = logging.getLogger("tearline.client")


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


@dataclass(frozen=True)
class Release:
    """Who a report with ``label`` sealed under ``suite`` goes to, and who it does not and why:
    what :meth:`AsyncPartner.release` decides and :meth:`AsyncPartner.publish` seals to.

    ``recipients`` are the entitled partners it is sealed for (each decision carries the key),
    ``not_sent`` every partner the label's REL TO names (groups expanded, the originator left
    out) that does not get it, with a reason code: the releasability engine's (DESIGN §4),
    ``UNKNOWN_PARTNER`` for an id the registry does not hold, ``EXCLUDED_BY_ONLY`` for one an
    ``only`` left out. ``decisions`` are all of the policy's, partner by partner."""

    label: Label
    suite: str
    decisions: Mapping[str, PreviewDecision]
    recipients: Mapping[str, PreviewDecision]
    not_sent: Mapping[str, str]

    @property
    def refused(self) -> dict[str, str]:
        """Those of ``not_sent`` the policy refused (not the ones ``only`` left out)."""
        return {p: code for p, code in self.not_sent.items() if code != EXCLUDED_BY_ONLY}


#: The reason ``Release.not_sent`` gives a partner the originator itself left out (``only``).
EXCLUDED_BY_ONLY: Final = "EXCLUDED_BY_ONLY"
#: The reason for a partner REL TO names that the registry does not hold.
UNKNOWN_PARTNER: Final = "UNKNOWN_PARTNER"


def release_of(
    label: Label,
    suite: str,
    decisions: Mapping[str, PreviewDecision],
    rel_to: Iterable[str],
    only: Iterable[str] | None = None,
) -> Release:
    """The :class:`Release` of the per-partner ``decisions``: ``rel_to`` are the partners the
    label names (groups expanded, the originator left out), ``only`` the originator's choice."""
    wanted = set(only) if only is not None else None
    recipients = {
        pid: d
        for pid, d in sorted(decisions.items())
        if d.granted and d.keys and (wanted is None or pid in wanted)
    }
    not_sent: dict[str, str] = {}
    for pid in sorted(rel_to):
        decision = decisions.get(pid)
        if decision is None:  # REL TO may name an id the registry does not hold
            not_sent[pid] = UNKNOWN_PARTNER
        elif not decision.granted:
            not_sent[pid] = decision.reason or "DENIED"
        elif not decision.keys:  # a grant with no key to seal to reaches nobody
            not_sent[pid] = "NO_ENCRYPTION_KEY"
        elif pid not in recipients:
            not_sent[pid] = EXCLUDED_BY_ONLY
    return Release(label, suite, decisions, recipients, not_sent)


#: How a delivery acknowledges itself, given its entry id. ``AsyncPartner``'s returns a
#: coroutine to await; the sync ``Partner``'s acknowledges at once and returns an awaitable that
#: is already done, so one type per delivery kind serves both clients.
Acker = Callable[[str], Awaitable[None]]


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
    _ack: Acker = field(repr=False, compare=False)

    def json(self) -> Any:
        return json.loads(self.payload)

    def stix(self, *, stamped: bool = True) -> dict[str, Any]:
        """The payload as a STIX bundle; ``stamped``: each object marked with this report's
        label (its TLP 2.0 marking and the Tearline releasability marking, see
        :func:`clients.stix.stamp`). Raises :class:`~clients.errors.StixError` if the payload
        is not a STIX bundle (its shape is checked, not the whole of STIX 2.1)."""
        bundle = parse_bundle(self.payload)
        if not stamped:
            return bundle
        return stamp(
            bundle,
            label=self.label,
            originator=self.originator,
            report_id=self.id,
            created=self.created,
        )

    def ack(self) -> Awaitable[None]:
        """Acknowledge it, so the broker stops redelivering it: ``await report.ack()`` from an
        ``AsyncPartner``; from the sync ``Partner``, plain ``report.ack()`` acknowledges."""
        return self._ack(self.entry_id)


@dataclass
class Recall:
    """A notice that the originator recalled report ``id``, which this node received: delete
    it and whatever was derived from it. Call :meth:`ack` once done."""

    id: str
    originator: str
    entry_id: str
    _ack: Acker = field(repr=False, compare=False)

    def ack(self) -> Awaitable[None]:
        """As :meth:`Report.ack`."""
        return self._ack(self.entry_id)


@dataclass
class Gap:
    """A notice that retention dropped ``lost`` entries of this node's inbox, older than entry
    ``before``, that it never acknowledged: ask their originators, or accept the loss."""

    lost: int
    before: str
    entry_id: str
    _ack: Acker = field(repr=False, compare=False)

    @property
    def id(self) -> str:
        return f"gap-{self.before}"

    def ack(self) -> Awaitable[None]:
        """As :meth:`Report.ack`."""
        return self._ack(self.entry_id)


@dataclass(frozen=True)
class Recalled:
    """What a recall did: copies withdrawn before delivery, and recipients notified."""

    report_id: str
    withdrawn: tuple[str, ...]
    notified: tuple[str, ...]


Delivery = Report | Recall | Gap

#: SSE event types that carry an inbox entry; anything else but ``error`` is skipped.
_DELIVERY_EVENTS: Final = frozenset({"report", "recall", "gap"})
#: The broker sends a heartbeat comment every ``sse_heartbeat_s`` (15 s by default): a minute
#: without a byte means the link is dead even if TCP has not noticed, so the stream reconnects.
_STREAM_READ_TIMEOUT_S: Final = 60.0


def decisions_of(
    policy: Policy, me: str, label: Label, suite: str, now: datetime
) -> dict[str, PreviewDecision]:
    """What ``policy`` (the node's own, from the documents it verified) decides for every
    partner, in the preview's shape: a grant carries the verified registry's key to seal to."""
    out: dict[str, PreviewDecision] = {}
    for pid, decision in policy.decide(label, me, suite, now).items():
        if not decision.granted:
            out[pid] = PreviewDecision("deny", reason=decision.reason)
            continue
        partner = policy.registry.get(pid)
        key = partner.enc_key(suite, now) if partner is not None else None
        # A grant implies the key (rule 2 comes before it); checked rather than assumed.
        if key is None:
            out[pid] = PreviewDecision("deny", reason="NO_ENCRYPTION_KEY")
            continue
        out[pid] = PreviewDecision("grant", agreement=decision.agreement, keys=(key,))
    return out


class AsyncPartner(SignedClient):
    """A partner node's client. ``reconnect_base_s`` and ``reconnect_cap_s`` shape the backoff
    of :meth:`subscribe` between reconnection attempts; ``rng`` draws its jitter (pass a seeded
    ``random.Random`` for a reproducible schedule)."""

    def __init__(
        self,
        base_url: str,
        identity: Identity,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 30.0,
        clock: Callable[[], datetime] = utc_now,
        reconnect_base_s: float = 0.5,
        reconnect_cap_s: float = 30.0,
        rng: random.Random | None = None,
        trust: TrustedState | None = None,
    ) -> None:
        super().__init__(base_url, identity, transport=transport, timeout_s=timeout_s, clock=clock)
        self._directory: Directory | None = None
        # With a trusted state (a pinned root and the registry and agreements it verified),
        # the node decides for itself with the releasability engine on those documents: the
        # broker's preview is not asked, and its directory serves only its own receipt key.
        self._trust: TrustedState | None = None
        self._policy: Policy | None = None
        if trust is not None:
            self._set_trust(trust)
        # Checked now, not at the first outage: a bad value is the caller's mistake.
        Backoff(base_s=reconnect_base_s, cap_s=reconnect_cap_s)
        self._reconnect_base_s = reconnect_base_s
        self._reconnect_cap_s = reconnect_cap_s
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    # --- what a partner does --------------------------------------------------------------

    async def directory(self, *, refresh: bool = False) -> Directory:
        if self._directory is None or refresh:
            self._directory = Directory.from_dict(await self._json("GET", "/v1/partners"))
        return self._directory

    async def verify_governance(self, root: bytes | str, *, memory: Path | None = None) -> Verified:
        """Check the broker's governance documents and transparency log against ``root`` (the
        root this node pinned: its bytes, or ``"sha256:<hex>"`` of them) and, with ``memory``
        (a file of this node's), against what it accepted before. From then on :meth:`publish`
        seals only to keys and under agreements that verification yielded. Raises
        GovernanceError or LogError, trusting nothing new, when the broker's answers do not
        verify. Documents change rarely: call it at start, then every few minutes, not per
        report."""
        from tearline.clients.governance.node import NodeMemory, verify_broker

        directory = await self.directory(refresh=True)
        verified = await verify_broker(
            self._fetch,
            root,
            NodeMemory.load(memory),
            kid=directory.broker_kid,
            public=directory.broker_public,
            now=self._clock(),
        )
        self._set_trust(verified.trust)
        return verified

    def _set_trust(self, trust: TrustedState) -> None:
        from tearline.clients.governance.policy import node_policy

        self._policy, left_out = node_policy(trust)
        self._trust = trust
        for aid, why in left_out.items():
            log.warning("agreement %s is signed but grants nothing here: %s", aid, why)

    async def releasability(
        self, label: Label, *, suite: str = "classic"
    ) -> dict[str, PreviewDecision]:
        """Who may receive a report with ``label``, partner by partner. A node that verified its
        governance (:meth:`verify_governance`, or ``trust=``) answers itself, with the
        releasability engine on the documents it verified at its own clock; otherwise this is
        the broker's :meth:`preview`."""
        if self._policy is None:
            return await self.preview(label, suite=suite)
        return decisions_of(self._policy, self.identity.partner, label, suite, self._clock())

    def scheme(self) -> Scheme | None:
        """The marking scheme of the verified registry, or None before verification."""
        return self._policy.scheme if self._policy is not None else None

    async def _fetch(self, path: str, params: Mapping[str, Any]) -> Any:
        return (await self._send("GET", path, params=params)).json()

    async def log_head(self, *, memory: Path | None = None) -> SignedTreeHead:
        """The broker's signed tree head, its signature checked; with ``memory``, also checked
        to extend the head remembered there (LogError if not), which it then replaces."""
        from tearline.clients.governance.node import NodeMemory, checked_head

        directory = await self.directory()
        remembered = NodeMemory.load(memory)
        head = await checked_head(
            self._fetch, remembered, kid=directory.broker_kid, public=directory.broker_public
        )
        remembered.head = head.raw
        remembered.save()
        return head

    async def log_consistency(self, first: int, second: int) -> list[bytes]:
        """The broker's consistency proof between its trees of ``first`` and ``second`` leaves."""
        proof = await self._fetch("/v1/log/proofs/consistency", {"first": first, "second": second})
        return [b64d(h) for h in proof["path"]]

    async def log_entries(self) -> tuple[SignedTreeHead, list[bytes]]:
        """Every document the log holds, with the head they were checked against."""
        from tearline.clients.governance.node import all_entries

        head = await self.log_head()
        return head, await all_entries(self._fetch, head)

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

    async def release(
        self, label: Label, *, suite: str = "classic", only: Iterable[str] | None = None
    ) -> Release:
        """Who a report with ``label`` would go to (only those in ``only``, if given: an
        originator may share with fewer, never more) and who it would not, and why; pass it to
        :meth:`publish` to seal to exactly that. The decisions are :meth:`releasability`'s:
        with verified governance, this node's own."""
        decisions = await self.releasability(label, suite=suite)
        scheme = self.scheme() or (await self.directory()).scheme
        rel_to = scheme.expand(label.releasable_to) - {self.identity.partner}
        return release_of(label, suite, decisions, rel_to, only)

    async def publish(
        self,
        payload: bytes | str | Mapping[str, Any],
        label: Label,
        *,
        suite: str = "classic",
        content_type: str = STIX_CONTENT_TYPE,
        only: Iterable[str] | None = None,
        unsafe_skip_stix_checks: bool = False,
        require_all: bool = False,
        release: Release | None = None,
    ) -> Receipt:
        """Seal ``payload`` for every partner entitled to ``label`` (or only those in ``only``)
        and post it. Who is entitled is ``release`` when given (what :meth:`release` said, so
        what a caller showed is what is sent), else :meth:`release`'s answer now.

        STIX content (``content_type`` the STIX 2.1 media type, the default) is checked first,
        before anything is sealed or posted (before anything is asked of the broker, unless
        ``release`` was): a payload that is not a valid STIX 2.1 bundle, or holds an object
        marked with a more restrictive TLP than the label's, raises
        :class:`~clients.errors.StixError` and nothing is sent (see
        :func:`clients.stix.check_bundle`). ``unsafe_skip_stix_checks`` sends it unchecked.

        Nothing is sent, and :class:`~clients.errors.DeniedError` says why (``details``:
        ``not_sent``, and every refused partner's reason in ``denied``), when no partner is
        entitled (``no_recipients``) or, with ``require_all``, when a partner REL TO names is
        not (``not_all_entitled``)."""
        if isinstance(payload, Mapping):
            payload = json.dumps(payload, separators=(",", ":")).encode()
        elif isinstance(payload, str):
            payload = payload.encode()
        if release is not None and (release.label != label or release.suite != suite):
            raise InputError("the release given was decided for another label or suite")
        if release is not None and only is not None:
            raise InputError("give only= to release(), not with a release to publish")
        if not unsafe_skip_stix_checks and is_stix_content_type(content_type):
            check_bundle(payload, label)
        plan = release or await self.release(label, suite=suite, only=only)
        if require_all and plan.refused:
            raise DeniedError(
                "not every partner named in REL TO is entitled to a report with this label",
                code="not_all_entitled",
                details={"not_sent": dict(plan.not_sent)},
            )
        if not plan.recipients:
            raise DeniedError(
                "no partner is entitled to a report with this label",
                code="no_recipients",
                details={
                    "denied": {p: d.reason for p, d in plan.decisions.items() if not d.granted},
                    "not_sent": dict(plan.not_sent),
                },
            )
        envelope = seal(
            payload,
            label,
            [(pid, d.keys[0]) for pid, d in plan.recipients.items()],
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

    async def post_envelopes(self, envelopes: Sequence[bytes]) -> list[Receipt | TearlineError]:
        """Post many sealed envelopes in one request (``POST /v1/reports:batch``); for each,
        in order, its receipt (signature checked) or the error a single post would have got.
        A refusal of the whole request (its signature, its size) raises as any call does."""
        if not envelopes:
            return []
        if any(b"\n" in e or b"\r" in e for e in envelopes):
            raise InputError("an envelope holds a line break; it cannot travel in a batch")
        body = b"\n".join(envelopes) + b"\n"
        response = await self._send(
            "POST", "/v1/reports:batch", body=body, content_type="application/x-ndjson"
        )
        directory = await self.directory()
        out: list[Receipt | TearlineError] = []
        for result in response.json()["results"]:
            if result["status"] == 201:
                out.append(
                    verify_receipt(result["body"], directory.broker_kid, directory.broker_public)
                )
                continue
            error = result["body"]["error"]
            cls = error_for_status(result["status"])
            out.append(cls(error["message"], code=error["code"], details=error.get("details")))
        return out

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

    async def _ack_one(self, entry_id: str) -> None:
        await self.ack([entry_id])

    async def subscribe(self, *, consumer: str = "default") -> AsyncIterator[Delivery]:
        """Reports (and notices) as they arrive over Server-Sent Events, until the caller stops.

        It keeps going: when the stream cannot be opened or is lost (the network, a broker
        restart or shutdown, an outage of the broker's store, HTTP 429 or 5xx) it reconnects
        after a capped, jittered exponential backoff — never sooner than the broker's
        ``Retry-After`` or SSE ``retry:`` — and resumes after the last event seen. A
        connection that delivered an event, or stayed up longer than the cap, resets the
        backoff. Each outage logs one warning on ``tearline.client`` when it begins and one
        line when the stream is back; a stream the broker ends cleanly (its lifetime is
        bounded) is reopened quietly unless reopening fails. A report seen twice is yielded
        once (the copy is acknowledged). It raises only what retrying cannot fix: 401
        (:class:`AuthenticationError`), 403 (:class:`DeniedError`), other 4xx
        (:class:`InputError`).
        """
        subscription = Subscription(
            Backoff(base_s=self._reconnect_base_s, cap_s=self._reconnect_cap_s, rng=self._rng)
        )
        while True:
            try:
                # aclosing: if our caller stops here, the connection's response is closed now,
                # not whenever the garbage collector finalises the inner generator.
                async with contextlib.aclosing(self._connection(consumer, subscription)) as conn:
                    async for delivery in conn:
                        yield delivery
                lost = StreamLost("the broker ended the stream", ended_by_broker=True)
            except TearlineError as exc:
                if not worth_retrying(exc):
                    raise
                lost = exc if isinstance(exc, StreamLost) else StreamLost.of(exc)
            await asyncio.sleep(subscription.delay_after(lost))

    async def _connection(
        self, consumer: str, subscription: Subscription
    ) -> AsyncGenerator[Delivery, None]:
        """One connection to ``GET /v1/inbox/stream``: the deliveries not yet yielded, until the
        broker ends it. Raises :class:`StreamLost` when it fails in a way worth retrying."""
        headers = {"accept": "text/event-stream", "cache-control": "no-store"}
        if subscription.last_event_id:
            headers["last-event-id"] = subscription.last_event_id
        # Signed afresh for each connection: the broker accepts a signature's nonce once.
        request = self._signed("GET", "/v1/inbox/stream", {"consumer": consumer}, None, headers)
        request.extensions["timeout"] = httpx.Timeout(30.0, read=_STREAM_READ_TIMEOUT_S).as_dict()
        try:
            response = await self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise StreamLost(
                f"cannot reach the broker at {self._http.base_url} ({network_reason(exc)})"
            ) from exc
        try:
            if not response.is_success:
                await response.aread()
                raise stream_refusal(response)
            subscription.opened()
            async for event in EventSource(response).aiter_sse():
                if event.event == "error":
                    raise StreamLost.from_event(event)
                if event.event not in _DELIVERY_EVENTS:
                    continue
                subscription.delivered()
                delivery = await self._open(json.loads(event.data))
                # Only now: an entry that failed to open for want of the broker (fetching the
                # directory) is read again, from here, when the stream resumes.
                subscription.last_event_id = event.id or subscription.last_event_id
                if delivery is None:
                    continue
                if subscription.first_time(event.event, delivery.id):
                    yield delivery
                else:  # redelivered after a reconnect or a visibility timeout: already handled
                    await delivery.ack()
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise StreamLost(f"the connection broke ({describe_http(exc)})") from exc
        finally:
            await response.aclose()

    async def _open(self, entry: Mapping[str, Any]) -> Delivery | None:
        if entry.get("kind") == "recall":
            return Recall(entry["report_id"], entry["originator"], entry["entry_id"], self._ack_one)
        if entry.get("kind") == "gap":
            gap = entry["gap"]
            return Gap(int(gap["lost"]), gap["before"], entry["entry_id"], self._ack_one)
        directory = await self.directory()
        # Originators are verified against the trusted registry when there is one.
        registry = self._trust.registry if self._trust is not None else directory.registry
        try:
            opened = open(
                entry["envelope"].encode(),
                self.identity,
                registry,
                directory.scheme,
                now=self._clock(),
            )
        except EnvelopeError as exc:
            # Left unacknowledged: the broker redelivers it, then dead-letters it for the operator.
            log.warning("report %s did not verify or open: %s", entry.get("report_id"), exc.reason)
            return None
        if self._policy is not None:
            # The engine again, on this node's own documents (DESIGN §4 runs it at delivery
            # too): a report under an agreement this node knows to be suspended or ended, or
            # one it was never entitled to, is not handed on however the broker routed it.
            me = self.identity.partner
            try:
                decision = self._policy.decide(
                    opened.label, opened.originator, opened.suite, self._clock(), partners=[me]
                )[me]
                why: str | None = decision.reason
            except TearlineError as exc:  # a label the verified scheme does not know
                why = exc.code
            if why is not None:
                log.warning(
                    "report %s from %s is not releasable to %s under the verified governance "
                    "documents (%s): not handed on, left for the operator",
                    opened.id,
                    opened.originator,
                    me,
                    why,
                )
                return None
        return Report(
            opened.id,
            opened.originator,
            opened.created,
            opened.label,
            opened.content_type,
            opened.payload,
            entry["entry_id"],
            self._ack_one,
        )
