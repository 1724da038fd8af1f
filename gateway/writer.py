"""The write side: an envelope POSTed to a writable collection is checked, wrapped as one STIX
bundle and published through the node's ``AsyncPartner`` under the collection's label; the
outcome, object by object, is what the status resource says.

One envelope is one report: if any object is refused (malformed, or refused by the STIX checks
of ``clients.stix``), nothing is published and every object is a failure, those refused with
their own reason, the others with ``not_published``. A broker refusal (``no_recipients``, with
each REL TO partner's reason, such as ``DEU: NO_AGREEMENT``) fails every object the same way.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from clients.errors import DeniedError, InputError, TearlineError
from clients.partner import Directory, PreviewDecision
from clients.protocol.label import Label
from clients.protocol.receipt import Receipt
from gateway.taxii import StatusDetail, bad_request, format_timestamp, object_problem

log = logging.getLogger("tearline.gateway")

#: The most objects one POST may carry.
MAX_OBJECTS = 10_000


class Publisher(Protocol):
    """What the write side needs of the node's client (``AsyncPartner`` is one)."""

    async def publish(self, payload: bytes, label: Label) -> Receipt: ...

    async def preview(self, label: Label) -> dict[str, PreviewDecision]: ...

    async def directory(self) -> Directory: ...


def parse_envelope(body: bytes) -> list[Any]:
    """The ``objects`` of a TAXII envelope; 400 for anything else."""
    from clients.protocol.encoding import EncodingError, strict_loads

    try:
        data = strict_loads(body)
    except (EncodingError, UnicodeDecodeError, ValueError) as exc:
        raise bad_request(f"the body is not valid JSON: {exc}", "invalid_json") from None
    if not isinstance(data, dict) or not isinstance(data.get("objects"), list):
        raise bad_request(
            'the body must be a TAXII envelope: {"objects": [STIX objects]}', "invalid_envelope"
        )
    objects: list[Any] = data["objects"]
    if not objects:
        raise bad_request("the envelope holds no objects", "invalid_envelope")
    if len(objects) > MAX_OBJECTS:
        raise bad_request(f"the envelope holds more than {MAX_OBJECTS} objects", "too_many")
    return objects


def detail(obj: Any, index: int, request_us: int, message: str | None = None) -> StatusDetail:
    """A status detail naming ``obj`` by its id and version, as far as it has them."""
    if isinstance(obj, dict):
        oid = obj.get("id")
        version = obj.get("modified", obj.get("created"))
    else:
        oid = version = None
    return StatusDetail(
        id=oid if isinstance(oid, str) else f"objects[{index}]",
        version=version if isinstance(version, str) else format_timestamp(request_us),
        message=message,
    )


@dataclass(frozen=True)
class Outcome:
    successes: tuple[StatusDetail, ...]
    failures: tuple[StatusDetail, ...]
    receipt: Receipt | None = None
    #: What was published (the checked bundle's objects), for the local copy.
    published: tuple[Any, ...] = ()


def _bundle(objects: Sequence[Any]) -> bytes:
    bundle = {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": list(objects)}
    return json.dumps(bundle, separators=(",", ":"), ensure_ascii=False).encode()


def check(objects: Sequence[Any], label: Label) -> tuple[dict[str, Any] | None, dict[int, str]]:
    """The bundle to publish, or the problems by object index. Uses ``clients.stix.check_bundle``
    when it is installed, after the gateway's own shape checks."""
    problems = {i: p for i, obj in enumerate(objects) if (p := object_problem(obj)) is not None}
    if problems:
        return None, {i: f"invalid_object: {p}" for i, p in problems.items()}
    payload = _bundle(objects)
    try:
        from clients.stix import StixError, check_bundle
    except ImportError:
        return json.loads(payload), {}
    try:
        checked: dict[str, Any] = check_bundle(payload, label)
    except StixError as exc:
        return None, _stix_problems(objects, exc)
    return checked, {}


def _stix_problems(objects: Sequence[Any], exc: InputError) -> dict[int, str]:
    """Each object's share of a ``StixError``: the findings that name its id, or its marking
    conflict; when none names an object, every object gets the error's message."""
    details = exc.details if isinstance(exc.details, Mapping) else {}
    findings = [f for f in details.get("findings", []) if isinstance(f, str)]
    conflicts = {
        e["id"]: f"marked {e.get('marking')}, more restrictive than the label's TLP"
        for e in details.get("objects", [])
        if isinstance(e, Mapping) and isinstance(e.get("id"), str)
    }
    out = {}
    for i, obj in enumerate(objects):
        oid = obj.get("id") if isinstance(obj, dict) else None
        if not isinstance(oid, str):
            continue
        said = [f for f in findings if oid in f] + ([conflicts[oid]] if oid in conflicts else [])
        if said:
            out[i] = f"{exc.code}: {'; '.join(said)}"
    return out or {i: f"{exc.code}: {exc.message}" for i in range(len(objects))}


async def share(
    publisher: Publisher, me: str, objects: Sequence[Any], label: Label, request_us: int
) -> Outcome:
    """Check ``objects`` and publish them as one report under ``label``."""
    # Off the event loop: stix2-validator costs milliseconds an object (and seconds to import).
    bundle, problems = await asyncio.to_thread(check, objects, label)
    if bundle is None:
        others = (
            f"not_published: {len(problems)} other object(s) of this envelope were refused; "
            "nothing was shared"
        )
        failures = [
            detail(o, i, request_us, problems.get(i) or others) for i, o in enumerate(objects)
        ]
        return Outcome(successes=(), failures=tuple(failures))
    payload = json.dumps(bundle, separators=(",", ":"), ensure_ascii=False).encode()
    try:
        receipt = await publisher.publish(payload, label)
    except DeniedError as exc:
        message = await _refusal(publisher, me, label, exc)
        return Outcome((), tuple(detail(o, i, request_us, message) for i, o in enumerate(objects)))
    except TearlineError as exc:
        log.warning("publishing to the broker failed: %s (%s)", exc.message, exc.code)
        message = f"{exc.code}: {exc.message}; nothing was shared, send it again"
        return Outcome((), tuple(detail(o, i, request_us, message) for i, o in enumerate(objects)))
    message = await _delivered(publisher, me, label, receipt)
    return Outcome(
        successes=tuple(detail(o, i, request_us, message) for i, o in enumerate(objects)),
        failures=(),
        receipt=receipt,
        published=tuple(bundle.get("objects", objects)),
    )


async def _rel_to(publisher: Publisher, me: str, label: Label) -> list[str]:
    try:
        scheme = (await publisher.directory()).scheme
    except TearlineError:
        return sorted(set(label.releasable_to) - {me})
    return sorted(scheme.expand(label.releasable_to) - {me})


async def _refusal(publisher: Publisher, me: str, label: Label, exc: DeniedError) -> str:
    """``no_recipients: ... (DEU: NO_AGREEMENT)``: the broker's code, and each REL TO
    partner's reason."""
    denied = exc.details.get("denied", {}) if isinstance(exc.details, Mapping) else {}
    named = await _rel_to(publisher, me, label)
    reasons = ", ".join(f"{p}: {denied.get(p, 'UNKNOWN_PARTNER')}" for p in named)
    return f"{exc.code}: {exc.message}" + (f" ({reasons})" if reasons else "")


async def _delivered(publisher: Publisher, me: str, label: Label, receipt: Receipt) -> str:
    """``published in report R to USA under gbr-usa; not sent to DEU: NO_AGREEMENT``."""
    to = ", ".join(f"{r.partner} under {r.agreement}" for r in receipt.recipients)
    message = f"published in report {receipt.id} to {to}"
    got = {r.partner for r in receipt.recipients}
    missing = [p for p in await _rel_to(publisher, me, label) if p not in got]
    if missing:
        try:
            decisions = await publisher.preview(label)
        except TearlineError:
            decisions = {}
        reasons = [
            f"{p}: {(d.reason if (d := decisions.get(p)) else None) or 'UNKNOWN_PARTNER'}"
            for p in missing
        ]
        message += "; not sent to " + ", ".join(reasons)
    return message
