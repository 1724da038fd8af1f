"""The write side: an envelope POSTed to a writable collection is checked, wrapped as one STIX
bundle and published through the node's ``AsyncPartner`` under the collection's label; the
outcome, object by object, is what the status resource says.

One envelope is one report: if any object is refused (malformed, or refused by the STIX checks
of ``clients.stix``), nothing is published and every object is a failure, those refused with
their own reason, the others with ``not_published``. A broker refusal (``no_recipients``, with
each REL TO partner's reason, such as ``DEU: NO_AGREEMENT``) fails every object the same way.
What is published carries the collection's label's TLP and no marking claiming less
(``clients.stix.mark_for_sharing``): an object left out on the way (a Tearline releasability
marking, a TLP marking-definition the label's supersedes) is a failure with the reason, the
rest is shared.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

from tearline.clients.errors import DeniedError, InputError, TearlineError
from tearline.clients.partner import UNKNOWN_PARTNER, Directory, Release
from tearline.clients.protocol.label import Label
from tearline.clients.protocol.receipt import Receipt
from tearline.clients.stix import StixError, check_bundle, mark_for_sharing, stamp_report
from tearline.gateway.taxii import StatusDetail, bad_request, format_timestamp, object_problem

log = logging.getLogger("tearline.gateway")

#: The most objects one POST may carry.
MAX_OBJECTS = 10_000
# Why a partner the node sealed for is not among the receipt's recipients.
NOT_ROUTED: Final = "NOT_ROUTED_BY_BROKER"


class Publisher(Protocol):
    """What the write side needs of the node's client (``AsyncPartner`` is one)."""

    async def release(self, label: Label) -> Release:
        """Who a report with ``label`` goes to and who not, and why: the node's own decision
        when it verified the governance documents, never the broker's say-so alone."""
        ...

    async def publish(self, payload: bytes, label: Label, release: Release) -> Receipt:
        """Seal ``payload`` for exactly ``release``'s recipients and post it."""
        ...

    async def directory(self) -> Directory: ...


def parse_envelope(body: bytes) -> list[Any]:
    """The ``objects`` of a TAXII envelope; 400 for anything else."""
    from tearline.clients.protocol.encoding import EncodingError, strict_loads

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
    #: What was published, stamped, for the local copy.
    published: tuple[Any, ...] = ()


def _bundle(objects: Sequence[Any]) -> bytes:
    bundle = {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": list(objects)}
    return json.dumps(bundle, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Checked:
    """What :func:`check` made of an envelope: the bundle to publish (None if refused), the
    refusals by object index, and the objects left out of the bundle by index, with why."""

    bundle: dict[str, Any] | None
    problems: Mapping[int, str]
    removed: Mapping[int, str]


def check(objects: Sequence[Any], label: Label) -> Checked:
    """The gateway's own shape checks, then ``clients.stix.check_bundle`` (valid STIX 2.1, no
    marking stricter than the label's), then ``clients.stix.mark_for_sharing``: every object
    marked with the label's TLP in place of any no more restrictive, object-level or granular,
    and no Tearline releasability marking (each recipient makes its own from the label it
    verifies; one a local user sends could claim any label)."""
    problems = {i: p for i, obj in enumerate(objects) if (p := object_problem(obj)) is not None}
    if problems:
        return Checked(None, {i: f"invalid_object: {p}" for i, p in problems.items()}, {})
    try:
        checked = check_bundle(_bundle(objects), label)
    except StixError as exc:
        return Checked(None, _stix_problems(objects, exc), {})
    marked = mark_for_sharing(checked, label)
    removed = {r.index: f"{r.code}: {r.reason}" for r in marked.removed}
    return Checked(marked.bundle, {}, removed)


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
    checked = await asyncio.to_thread(check, objects, label)
    bundle, problems, removed = checked.bundle, checked.problems, checked.removed
    if bundle is not None and len(removed) == len(objects):
        problems, bundle = removed, None  # nothing of its own left to share
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
        release = await publisher.release(label)
        receipt = await publisher.publish(payload, label, release)
    except DeniedError as exc:
        message = await _refusal(publisher, me, label, exc)
        return Outcome((), tuple(detail(o, i, request_us, message) for i, o in enumerate(objects)))
    except TearlineError as exc:
        log.warning("publishing to the broker failed: %s (%s)", exc.message, exc.code)
        message = f"{exc.code}: {exc.message}; nothing was shared, send it again"
        return Outcome((), tuple(detail(o, i, request_us, message) for i, o in enumerate(objects)))
    message = _delivered(release, receipt)
    # The local copy is stamped as a recipient stamps it: the label's TLP and this report's
    # releasability marking.
    local = stamp_report(
        bundle, label=label, originator=me, report_id=receipt.id, created=_when(receipt)
    ).bundle
    return Outcome(
        successes=tuple(
            detail(o, i, request_us, message) for i, o in enumerate(objects) if i not in removed
        ),
        failures=tuple(
            detail(o, i, request_us, f"{removed[i]}; the rest was {message}")
            for i, o in enumerate(objects)
            if i in removed
        ),
        receipt=receipt,
        published=tuple(local["objects"]),
    )


def _when(receipt: Receipt) -> datetime | None:
    try:
        return datetime.fromisoformat(receipt.accepted_at)
    except ValueError:
        return None


async def _rel_to(publisher: Publisher, me: str, label: Label) -> list[str]:
    try:
        scheme = (await publisher.directory()).scheme
    except TearlineError:
        return sorted(set(label.releasable_to) - {me})
    return sorted(scheme.expand(label.releasable_to) - {me})


async def _refusal(publisher: Publisher, me: str, label: Label, exc: DeniedError) -> str:
    """``no_recipients: ... (DEU: NO_AGREEMENT)``: the refusal's code, and each REL TO
    partner's reason (the release's, when the node refused before posting)."""
    details = exc.details if isinstance(exc.details, Mapping) else {}
    not_sent = details.get("not_sent")
    if isinstance(not_sent, Mapping):
        reasons = ", ".join(f"{p}: {why}" for p, why in sorted(not_sent.items()))
    else:  # the broker refused: its reasons, for the partners the label names
        denied = details.get("denied", {})
        named = await _rel_to(publisher, me, label)
        reasons = ", ".join(f"{p}: {denied.get(p, UNKNOWN_PARTNER)}" for p in named)
    return f"{exc.code}: {exc.message}" + (f" ({reasons})" if reasons else "")


def _delivered(release: Release, receipt: Receipt) -> str:
    """``published in report R to USA under gbr-usa; not sent to DEU: NO_AGREEMENT``: who the
    broker routed it to, and why each other partner the label names was not sealed for."""
    to = ", ".join(f"{r.partner} under {r.agreement}" for r in receipt.recipients)
    message = f"published in report {receipt.id} to {to}"
    got = {r.partner for r in receipt.recipients}
    missing = dict(release.not_sent)
    # Sealed for, but not routed: the broker's policy refused it (a suspension the node has
    # not seen yet, say); what the broker holds is all this node knows.
    missing |= {p: NOT_ROUTED for p in release.recipients if p not in got}
    if missing:
        message += "; not sent to " + ", ".join(f"{p}: {why}" for p, why in sorted(missing.items()))
    return message
