"""STIX 2.1 on the partner node, pure (bytes and dicts in, results out, no I/O):
:func:`check_bundle` before sealing (valid STIX 2.1, markings no higher than the label),
:func:`stamp` on receipt (every object marked with the label's TLP 2.0 marking and the report's
Tearline releasability marking, see docs/stix-releasability.md), :func:`bundle_from_misp`
(``clients.stix.misp``) for MISP events. Schema validation and MISP conversion need the ``cti``
extra."""

from tearline.clients.errors import StixError
from tearline.clients.stix.check import (
    MAX_FINDINGS,
    check_bundle,
    check_markings,
    marking_conflicts,
)
from tearline.clients.stix.markings import (
    OFFICIAL_TLP,
    TLP1_MARKING_IDS,
    TLP2_EXTENSION_ID,
    TLP2_MARKING_IDS,
    tlp_of_definition,
    tlp_of_object,
)
from tearline.clients.stix.stamp import (
    RELEASABILITY_EXTENSION,
    RELEASABILITY_EXTENSION_ID,
    TEARLINE_IDENTITY,
    TEARLINE_IDENTITY_ID,
    Marked,
    Removed,
    mark_for_sharing,
    releasability_marking,
    stamp,
    stamp_report,
)

__all__ = [
    "MAX_FINDINGS",
    "OFFICIAL_TLP",
    "RELEASABILITY_EXTENSION",
    "RELEASABILITY_EXTENSION_ID",
    "TEARLINE_IDENTITY",
    "TEARLINE_IDENTITY_ID",
    "TLP1_MARKING_IDS",
    "TLP2_EXTENSION_ID",
    "TLP2_MARKING_IDS",
    "Marked",
    "Removed",
    "StixError",
    "check_bundle",
    "check_markings",
    "mark_for_sharing",
    "marking_conflicts",
    "releasability_marking",
    "stamp",
    "stamp_report",
    "tlp_of_definition",
    "tlp_of_object",
]
