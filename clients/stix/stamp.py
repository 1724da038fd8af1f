"""Stamping on receipt: a received bundle's objects marked with the report's label.

Each object of the bundle (but marking-definitions and extension-definitions) gets, in its
``object_marking_refs``, the official TLP 2.0 marking of the label's TLP, in place of the TLP
markings it had, object-level or granular, that are no more restrictive (the sender's SDK
checked that all are; one stricter, from a sender who skipped the checks, is kept), and the
report's *Tearline releasability marking*. The label is the only thing the recipient verified,
so nothing a sender wrote may claim more: a Tearline releasability marking other than the one
made here (a forgery naming any label), a reference to a marking the bundle does not define
(it could name another report's marking stored beside it) and a TLP marking-definition no more
restrictive than the label's are left out; an object whose markings are malformed is left out
alone (:class:`Removed` says which and why), never kept unmarked. :func:`mark_for_sharing` does
the same on the way out, without the releasability marking, which each recipient makes.

That marking follows the precedent of the ACS 3.0
(``extension-definition--3a65884d-005a-4290-8335-cb2d778a83ce``) and IEP 2.0
(``extension-definition--762e2e97-ee51-43e5-a9ea-165fbb862c4a``) markings published in OASIS
cti-stix-common-objects: a ``marking-definition`` whose ``extensions`` hold a
``property-extension`` of one extension-definition, here :data:`RELEASABILITY_EXTENSION`,
created by the fixed identity :data:`TEARLINE_IDENTITY`. Every field is documented in
docs/stix-releasability.md, with an example.

The stamped bundle holds, besides the objects, the TLP 2.0 marking-definition, the report's
releasability marking-definition, the extension-definition and the Tearline identity, so it
validates on its own (:func:`clients.stix.check.check_bundle` passes it). It is a local view of
the report for the receiving node's tools, not a new version of the objects to share on: their
``modified`` is left as the originator wrote it.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from tearline.clients.protocol.encoding import canonical_json
from tearline.clients.protocol.label import Label
from tearline.clients.stix.markings import (
    OFFICIAL_TLP,
    TLP2_MARKING_IDS,
    tlp2_marking_definition,
    tlp_of_definition,
    tlp_rank,
)

#: When the extension and its identity were defined: their ``created`` and ``modified``.
DEFINED: Final = "2026-12-01T00:00:00.000Z"

TEARLINE_IDENTITY_ID: Final = "identity--facf8557-f258-493f-86bb-95cf673ab4bc"
TEARLINE_IDENTITY: Final[dict[str, Any]] = {
    "type": "identity",
    "spec_version": "2.1",
    "id": TEARLINE_IDENTITY_ID,
    "created": DEFINED,
    "modified": DEFINED,
    "name": "Tearline",
    "description": "The Tearline partner software, which defines the Tearline releasability "
    "marking and stamps received reports with it.",
    "identity_class": "system",
}

RELEASABILITY_EXTENSION_ID: Final = "extension-definition--7adc5e81-2362-41c8-8bca-115514335ed5"
RELEASABILITY_EXTENSION: Final[dict[str, Any]] = {
    "type": "extension-definition",
    "spec_version": "2.1",
    "id": RELEASABILITY_EXTENSION_ID,
    "created": DEFINED,
    "modified": DEFINED,
    "created_by_ref": TEARLINE_IDENTITY_ID,
    "name": "Tearline releasability marking",
    "description": "A data marking carrying the security label of the Tearline report an "
    "object arrived in: classification, REL TO, caveats, topics, TLP, originator, report id.",
    "schema": "docs/stix-releasability.md in the Tearline source distribution: the Tearline "
    "releasability marking, a property-extension of marking-definition",
    "version": "1.0.0",
    "extension_types": ["property-extension"],
}

#: The namespace of the releasability markings' UUIDv5 ids: one id per report and label.
_MARKING_NAMESPACE: Final = uuid.UUID("faeb9ff2-24ca-45ce-9207-eba5914b901e")
_DEFINITIONS: Final = frozenset({"marking-definition", "extension-definition"})


def _stix_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def releasability_marking(
    *, label: Label, originator: str, report_id: str, created: datetime | None = None
) -> dict[str, Any]:
    """The Tearline releasability marking-definition of one report. Its id is a UUIDv5 of the
    report id, the originator and the label, so stamping the same report twice gives the same
    marking; ``created`` (the report's creation time, say) defaults to :data:`DEFINED`."""
    labelled = label.to_dict()
    seed = canonical_json({"label": labelled, "originator": originator, "report_id": report_id})
    # STIX forbids empty lists: a label without caveats or topics leaves the field out.
    extension: dict[str, Any] = {
        "extension_type": "property-extension",
        "classification": label.classification,
        "releasable_to": list(label.releasable_to),
        **({"caveats": list(label.caveats)} if label.caveats else {}),
        **({"topics": list(label.topics)} if label.topics else {}),
        "tlp": label.tlp,
        "originator": originator,
        "report_id": report_id,
        **({"policy": label.policy} if label.policy is not None else {}),
        **({"expires": labelled["expires"]} if "expires" in labelled else {}),
    }
    rel_to = ", ".join(label.releasable_to)
    caveats = "".join(f" {c}" for c in label.caveats)
    return {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": f"marking-definition--{uuid.uuid5(_MARKING_NAMESPACE, seed.decode())}",
        "created": DEFINED if created is None else _stix_time(created),
        "created_by_ref": TEARLINE_IDENTITY_ID,
        "name": f"{label.classification}{caveats} REL TO {rel_to} TLP:{label.tlp} "
        f"(Tearline report {report_id} from {originator})",
        "extensions": {RELEASABILITY_EXTENSION_ID: extension},
    }


@dataclass(frozen=True)
class Removed:
    """An object that marking left out of a bundle: its place, its id if it has one, a
    machine-readable ``code`` and the reason.

    Codes: ``not_an_object`` (not a JSON object, or no string ``type`` and ``id``),
    ``malformed_markings`` (``object_marking_refs`` or ``granular_markings`` not of the STIX
    shape: which markings it meant cannot be known, so it is not kept with fewer),
    ``tearline_marking`` (a Tearline releasability marking, or the objects that define it, that
    this node did not make from the report's label), ``superseded_marking`` (a TLP
    marking-definition no more restrictive than the label's TLP, which marks every object
    instead)."""

    index: int
    id: str | None
    code: str
    reason: str

    def __str__(self) -> str:
        return f"{self.id or f'objects[{self.index}]'}: {self.code}: {self.reason}"


@dataclass(frozen=True)
class Marked:
    """A bundle whose objects carry only the markings its label allows, and what was left out."""

    bundle: dict[str, Any]
    removed: tuple[Removed, ...] = ()


def _is_tearline_marking(definition: dict[str, Any]) -> bool:
    """A marking-definition that says it is Tearline's: it carries the releasability extension
    or was created by the Tearline identity (which creates nothing else)."""
    extensions = definition.get("extensions")
    return definition.get("created_by_ref") == TEARLINE_IDENTITY_ID or (
        isinstance(extensions, dict) and RELEASABILITY_EXTENSION_ID in extensions
    )


def _markings_problem(obj: dict[str, Any]) -> str | None:
    """Why ``obj``'s marking properties are not of the STIX 2.1 shape, or None."""
    refs = obj.get("object_marking_refs")
    if refs is not None and (
        not isinstance(refs, list) or not all(isinstance(r, str) for r in refs)
    ):
        return "object_marking_refs is not a list of marking-definition ids"
    granular = obj.get("granular_markings")
    if granular is None:
        return None
    if not isinstance(granular, list):
        return "granular_markings is not a list"
    for g in granular:
        if not isinstance(g, dict):
            return "a granular marking is not a JSON object"
        ref, lang = g.get("marking_ref"), g.get("lang")
        if (ref is None) == (lang is None) or not isinstance(ref if lang is None else lang, str):
            return "a granular marking needs exactly one of marking_ref and lang, a string"
        selectors = g.get("selectors")
        if (
            not isinstance(selectors, list)
            or not selectors
            or not all(isinstance(s, str) for s in selectors)
        ):
            return "a granular marking's selectors is not a list of strings"
    return None


def _mark(bundle: dict[str, Any], label: Label, marking: dict[str, Any] | None) -> Marked:
    """The core of :func:`stamp_report` (``marking``: the report's releasability marking) and
    :func:`mark_for_sharing` (``marking`` None). Only the label's TLP, stricter TLP markings
    and the bundle's own non-TLP markings survive; see the module's docstring."""
    tlp_id = TLP2_MARKING_IDS[label.tlp]
    ceiling = tlp_rank(label.tlp)
    added: dict[str, dict[str, Any]] = {tlp_id: tlp2_marking_definition(label.tlp)}
    if marking is not None:
        added[marking["id"]] = marking
        added[RELEASABILITY_EXTENSION_ID] = copy.deepcopy(RELEASABILITY_EXTENSION)
        added[TEARLINE_IDENTITY_ID] = copy.deepcopy(TEARLINE_IDENTITY)
    given = bundle.get("objects")
    originals: list[Any] = given if isinstance(given, list) else []
    removed: list[Removed] = []
    kept: dict[int, dict[str, Any]] = {}
    # Markings an object may keep a reference to: stricter TLP levels (by id), and the non-TLP
    # marking-definitions the bundle itself holds (a statement, ACS, IEP).
    levels = {r: level for r, level in OFFICIAL_TLP.items() if tlp_rank(level) > ceiling}
    others: set[str] = set()

    def drop(i: int, obj: Any, code: str, reason: str) -> None:
        oid = obj.get("id") if isinstance(obj, dict) else None
        removed.append(Removed(i, oid if isinstance(oid, str) else None, code, reason))

    for i, obj in enumerate(originals):  # the definitions first: what references may name
        if not isinstance(obj, dict) or obj.get("type") not in _DEFINITIONS:
            continue
        oid = obj.get("id")
        if not isinstance(oid, str):
            drop(i, obj, "not_an_object", "it has no string id")
        elif oid in added:
            continue  # ours, from an earlier stamp: replaced by the fresh copies below
        elif oid in _TEARLINE_OWN or (
            obj["type"] == "marking-definition" and _is_tearline_marking(obj)
        ):
            drop(i, obj, "tearline_marking", _TEARLINE_REASON[marking is None])
        elif obj["type"] == "marking-definition" and (level := tlp_of_definition(obj)):
            if tlp_rank(level) <= ceiling:
                drop(i, obj, "superseded_marking",
                     f"TLP:{level} is no more restrictive than the label's TLP:{label.tlp}, "
                     "which marks every object instead")  # fmt: skip
                continue
            # An official id means its official level: its official text, whatever was sent.
            official = next((lv for lv, r in TLP2_MARKING_IDS.items() if r == oid), None)
            kept[i] = tlp2_marking_definition(official) if official else copy.deepcopy(obj)
            levels[oid] = level
        else:
            kept[i] = copy.deepcopy(obj)
            if obj["type"] == "marking-definition":
                others.add(oid)

    def allowed(ref: str) -> bool:
        # Not a TLP no stricter than the label's, not Tearline's, and defined: a reference to
        # a marking the bundle does not hold could name another report's Tearline marking
        # stored beside it, so it is not kept.
        return ref in levels or ref in others

    for i, obj in enumerate(originals):
        if isinstance(obj, dict) and obj.get("type") in _DEFINITIONS:
            continue
        if (
            not isinstance(obj, dict)
            or not isinstance(obj.get("type"), str)
            or not isinstance(obj.get("id"), str)
        ):
            drop(i, obj, "not_an_object", "it is not a JSON object with a string type and id")
            continue
        if obj["id"] in added or obj["id"] in _TEARLINE_OWN:
            if obj["id"] not in added:
                drop(i, obj, "tearline_marking", _TEARLINE_REASON[marking is None])
            continue
        problem = _markings_problem(obj)
        if problem is not None:
            drop(i, obj, "malformed_markings", problem)
            continue
        out = copy.deepcopy(obj)
        refs = [r for r in out.get("object_marking_refs", []) if allowed(r)]
        out["object_marking_refs"] = [
            *dict.fromkeys(refs),
            tlp_id,
            *([marking["id"]] if marking is not None else []),
        ]
        if "granular_markings" in out:
            granular = [
                g for g in out["granular_markings"] if "lang" in g or allowed(g["marking_ref"])
            ]
            if granular:
                out["granular_markings"] = granular
            else:  # STIX forbids an empty list
                del out["granular_markings"]
        kept[i] = out
    body = {k: copy.deepcopy(v) for k, v in bundle.items() if k != "objects"}
    objects = [kept[i] for i in sorted(kept)]
    return Marked({**body, "objects": [*objects, *added.values()]}, tuple(removed))


#: The fixed objects of the releasability marking: only a stamp puts them in a bundle.
_TEARLINE_OWN: Final = frozenset({RELEASABILITY_EXTENSION_ID, TEARLINE_IDENTITY_ID})
_TEARLINE_REASON: Final = {
    False: "a Tearline releasability marking this node did not make from the report's "
    "verified label",
    True: "a Tearline releasability marking is made by each receiving node from the "
    "report's label; it is not shared",
}


def stamp_report(
    bundle: dict[str, Any],
    *,
    label: Label,
    originator: str,
    report_id: str,
    created: datetime | None = None,
) -> Marked:
    """A new bundle: ``bundle``'s objects each marked with ``label``'s TLP 2.0 marking and the
    report's releasability marking, with the definitions those markings need, and the objects
    left out. ``bundle`` is left as it is.

    An object keeps, besides those two, only the TLP markings stricter than the label's (the
    sender skipped its checks: stamping never lowers a marking) and references to the
    bundle's own non-TLP marking-definitions, object-level and granular alike. Left out: TLP
    marking-definitions and references no more restrictive than the label's (a granular
    TLP:CLEAR on ``pattern`` would otherwise claim that part is shareable beyond the label),
    every Tearline releasability marking but this report's (a sender can write one claiming
    any label), references to markings the bundle does not define, and an object whose
    markings are malformed (alone: the others are stamped)."""
    marking = releasability_marking(
        label=label, originator=originator, report_id=report_id, created=created
    )
    return _mark(bundle, label, marking)


def stamp(
    bundle: dict[str, Any],
    *,
    label: Label,
    originator: str,
    report_id: str,
    created: datetime | None = None,
) -> dict[str, Any]:
    """:func:`stamp_report`'s bundle."""
    return stamp_report(
        bundle, label=label, originator=originator, report_id=report_id, created=created
    ).bundle


def mark_for_sharing(bundle: dict[str, Any], label: Label) -> Marked:
    """The bundle a node shares under ``label``: as :func:`stamp_report` marks it, but with no
    releasability marking and without the Tearline objects (each recipient makes its own from
    the label it verified). Run after :func:`clients.stix.check_bundle`, which refuses
    markings stricter than the label's."""
    return _mark(bundle, label, None)
