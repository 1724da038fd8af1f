"""The node's subscription, run inside the gateway: what the broker delivers becomes TAXII.

A verified, decrypted :class:`~clients.partner.Report` with STIX content has its objects stored
(``received`` and ``from-<originator>``) in one transaction, and is acknowledged to the broker
only after that transaction committed: a crash in between means the broker delivers it again,
and the store, which knows the report id, takes the copy as a duplicate. A
:class:`~clients.partner.Recall` removes what the report brought (tombstones remain), then is
acknowledged. A :class:`~clients.partner.Gap` is logged and acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from tearline.clients.errors import AuthenticationError, DeniedError, TearlineError
from tearline.clients.partner import Delivery, Gap, Recall, Report
from tearline.clients.stix.markings import tlp_rank
from tearline.clients.stix.stamp import stamp_report
from tearline.gateway.config import FROM_PREFIX, RECEIVED
from tearline.gateway.store import Store, Stored, clock_us

log = logging.getLogger("tearline.gateway")

#: How long the loop waits before subscribing again after the SDK gave up (401, 403, 4xx).
RESUBSCRIBE_S = 10.0
_STIX_TYPES = ("application/stix+json", "application/json")


class Subscriber(Protocol):
    def subscribe(self, *, consumer: str = "default") -> AsyncIterator[Delivery]: ...


def stix_objects(report: Report) -> list[Any] | None:
    """The objects of a report's STIX bundle, or None if it holds no STIX bundle."""
    media = report.content_type.split(";", 1)[0].strip().lower()
    if media not in _STIX_TYPES:
        return None
    try:
        data = json.loads(report.payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("objects"), list):
        return None
    objects: list[Any] = data["objects"]
    return objects


def stamped(report: Report, objects: list[Any]) -> list[Any]:
    """The objects marked with the report's label (``clients.stix.stamp_report``: the TLP 2.0
    marking and the report's Tearline releasability marking, with their definitions), so the
    tools that read the gateway see how each may be shared. What a sender wrote that claims
    more than the verified label (a forged releasability marking, a granular TLP:CLEAR) is
    left out; an object whose markings are malformed is left out alone, and logged. Nothing is
    ever returned unmarked: if stamping itself fails, no object is."""
    bundle = {"type": "bundle", "id": f"bundle--{report.id}", "objects": objects}
    try:
        marked = stamp_report(
            bundle,
            label=report.label,
            originator=report.originator,
            report_id=report.id,
            created=report.created,
        )
    except Exception:  # a bug in stamping: store none of it rather than anything unmarked
        log.exception("report %s could not be stamped with its label; no object stored", report.id)
        return []
    dropped = [r for r in marked.removed if r.code in ("not_an_object", "malformed_markings")]
    if dropped:
        log.warning(
            "report %s from %s: %d object(s) left out for malformed markings or shape: %s",
            report.id, report.originator, len(dropped), "; ".join(map(str, dropped[:5])),
        )  # fmt: skip
    others = len(marked.removed) - len(dropped)
    if others:
        log.warning(
            "report %s from %s: %d marking object(s) claiming more than its label left out: %s",
            report.id, report.originator, others,
            "; ".join(str(r) for r in marked.removed if r not in dropped)[:500],
        )  # fmt: skip
    out: list[Any] = marked.bundle["objects"]
    return out


async def handle(delivery: Delivery, store: Store, clock: Callable[[], int] = clock_us) -> None:
    """Store (or remove) what ``delivery`` says, then acknowledge it. Raises if the store
    fails: the delivery is then not acknowledged, and comes back."""
    if isinstance(delivery, Report):
        objects = stix_objects(delivery)
        if objects is None:
            log.warning(
                "report %s from %s is not a STIX bundle (%s); acknowledged, not stored",
                delivery.id, delivery.originator, delivery.content_type,
            )  # fmt: skip
            objects = []
        source = f"{FROM_PREFIX}{delivery.originator}"
        report, found, now = delivery, objects, clock()

        def store_it() -> Stored:  # in a thread: stamping and storing cost CPU and disk
            return store.add_report(
                report.id,
                report.originator,
                [RECEIVED, source],
                stamped(report, found) if found else found,
                now_us=now,
                tlp_rank=tlp_rank(report.label.tlp),
                titles={RECEIVED: "Everything received", source: f"From {report.originator}"},
            )

        stored = await asyncio.to_thread(store_it)
        if stored.duplicate:
            log.info("report %s seen before (or recalled): acknowledged again", delivery.id)
        elif stored.skipped:
            log.warning(
                "report %s from %s: %d object(s) malformed and not stored",
                delivery.id, delivery.originator, stored.skipped,
            )  # fmt: skip
    elif isinstance(delivery, Recall):
        removed = await asyncio.to_thread(
            store.recall, delivery.id, delivery.originator, now_us=clock()
        )
        log.info(
            "report %s recalled by %s: %d object version(s) removed",
            delivery.id, delivery.originator, removed,
        )  # fmt: skip
    elif isinstance(delivery, Gap):
        log.warning(
            "gap: the broker's retention dropped %d entries before %s that the gateway never "
            "acknowledged; ask their originators to send them again",
            delivery.lost, delivery.before,
        )  # fmt: skip
    await delivery.ack()  # only now: the transaction above has committed


async def run(
    partner: Subscriber,
    store: Store,
    *,
    consumer: str = "gateway",
    clock: Callable[[], int] = clock_us,
    resubscribe_s: float = RESUBSCRIBE_S,
) -> None:
    """Follow the node's inbox until cancelled. The SDK reconnects through outages itself;
    what it gives up on (a refused key, say) is logged and tried again later."""
    while True:
        try:
            deliveries = partner.subscribe(consumer=consumer)
            try:
                async for delivery in deliveries:
                    try:
                        await handle(delivery, store, clock)
                    except TearlineError as exc:  # the ack failed: it comes back, a duplicate
                        log.warning("could not acknowledge %s: %s", delivery.entry_id, exc.message)
                    except Exception:
                        # Not acknowledged, so the broker delivers it again; a new subscription,
                        # because the SDK acknowledges unseen a copy of a report it has yielded.
                        log.exception(
                            "could not store delivery %s; it will be read again", delivery.entry_id
                        )
                        break
            finally:  # close the connection now, not when the generator is collected
                aclose = getattr(deliveries, "aclose", None)
                if aclose is not None:
                    await aclose()
        except (AuthenticationError, DeniedError, TearlineError) as exc:
            log.error("the subscription stopped: %s (%s); retrying", exc.message, exc.code)
        await asyncio.sleep(resubscribe_s)
