"""Stamping on receipt: a received bundle's objects marked with the report's label.

Each object of the bundle (but marking-definitions and extension-definitions) gets, in its
``object_marking_refs``, the official TLP 2.0 marking of the label's TLP, in place of the
official TLP markings it had at object level that are no more restrictive (the sender's SDK
checked that all are; one stricter, from a sender who skipped the checks, is kept), and the
report's *Tearline releasability marking*. Granular markings are left as they are.

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
from datetime import UTC, datetime
from typing import Any, Final

from clients.protocol.encoding import canonical_json
from clients.protocol.label import Label
from clients.stix.markings import (
    OFFICIAL_TLP,
    TLP2_MARKING_IDS,
    tlp2_marking_definition,
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


def stamp(
    bundle: dict[str, Any],
    *,
    label: Label,
    originator: str,
    report_id: str,
    created: datetime | None = None,
) -> dict[str, Any]:
    """A new bundle: ``bundle``'s objects each marked with ``label``'s TLP 2.0 marking and the
    report's releasability marking, with the definitions those markings need. ``bundle`` is
    left as it is."""
    marking = releasability_marking(
        label=label, originator=originator, report_id=report_id, created=created
    )
    tlp_id = TLP2_MARKING_IDS[label.tlp]
    ceiling = tlp_rank(label.tlp)
    added = {
        tlp_id: tlp2_marking_definition(label.tlp),
        marking["id"]: marking,
        RELEASABILITY_EXTENSION_ID: copy.deepcopy(RELEASABILITY_EXTENSION),
        TEARLINE_IDENTITY_ID: copy.deepcopy(TEARLINE_IDENTITY),
    }
    objects = []
    for original in bundle.get("objects", []):
        if original.get("id") in added:
            continue  # ours, from an earlier stamp: replaced by the fresh copies below
        obj = copy.deepcopy(original)
        if obj.get("type") not in _DEFINITIONS:
            # TLP markings the label's covers give way to it; a stricter one (from a sender
            # who skipped the checks) stays, so stamping never lowers an object's marking.
            kept = [
                r
                for r in obj.get("object_marking_refs", [])
                if r not in OFFICIAL_TLP or tlp_rank(OFFICIAL_TLP[r]) > ceiling
            ]
            obj["object_marking_refs"] = [
                *(r for r in kept if r != marking["id"]),
                tlp_id,
                marking["id"],
            ]
        objects.append(obj)
    return {**copy.deepcopy(bundle), "objects": [*objects, *added.values()]}
