"""TLP data markings in STIX 2.1: the official marking-definition ids and which TLP an object
carries.

TLP 2.0 has no marking-definition objects in the STIX 2.1 specification itself; OASIS
publishes them in ``cti-stix-common-objects`` (``extension-definition-specifications/tlp-2.0``)
as marking-definitions carrying the property-extension
``extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d`` with ``tlp_2_0`` set to the
level. The ids below are those objects' ids, checked against misp-stix's
``misp_stix_mapping.TLP2MarkingDefinitions`` (which builds the same objects). The TLP 1.0 ids
are the four the STIX 2.1 specification predefines (``stix2.v21.common.TLP_WHITE`` and so on).

TLP 1.0 markings count as their TLP 2.0 equivalents: WHITE as CLEAR, GREEN, AMBER and RED as
themselves (TLP 1.0 AMBER allowed sharing with clients who need to know, as TLP 2.0 AMBER does;
AMBER+STRICT is new in 2.0). A marking-definition in the bundle under another id counts too when
it says which TLP it is: ``definition_type: "tlp"`` with ``definition.tlp`` (the STIX 2.1 form),
or the TLP 2.0 extension's ``tlp_2_0``. An official id always means its official level, whatever
an object of that id in the bundle claims.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from tearline.clients.protocol.label import TLP_LEVELS

#: The TLP 2.0 property-extension the official TLP 2.0 marking-definitions carry.
TLP2_EXTENSION_ID: Final = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"

#: The official TLP 2.0 marking-definition id of each level of ``TLP_LEVELS``.
TLP2_MARKING_IDS: Final[Mapping[str, str]] = {
    "CLEAR": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "GREEN": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "AMBER": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "AMBER+STRICT": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "RED": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
#: The STIX 2.1 specification's TLP 1.0 marking-definition ids, as the TLP 2.0 level they mean.
TLP1_MARKING_IDS: Final[Mapping[str, str]] = {
    "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9": "CLEAR",  # TLP:WHITE
    "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da": "GREEN",
    "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82": "AMBER",
    "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed": "RED",
}
#: Every official TLP marking-definition id, 1.0 and 2.0, with the TLP 2.0 level it means.
OFFICIAL_TLP: Final[Mapping[str, str]] = {
    **{mid: level for level, mid in TLP2_MARKING_IDS.items()},
    **TLP1_MARKING_IDS,
}

_RANK: Final = {level: i for i, level in enumerate(TLP_LEVELS)}
#: TLP names as producers write them (lower case, TLP 1.0's white) → the TLP 2.0 level.
_NAMES: Final = {"white": "CLEAR", **{level.lower(): level for level in TLP_LEVELS}}


def tlp_rank(level: str) -> int:
    """0 for CLEAR up to 4 for RED: a higher rank is more restrictive."""
    return _RANK[level]


def tlp2_marking_definition(level: str) -> dict[str, Any]:
    """The official TLP 2.0 marking-definition object of ``level``, as OASIS publishes it."""
    return {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": TLP2_MARKING_IDS[level],
        "created": "2022-10-01T00:00:00.000Z",
        "name": f"TLP:{level}",
        "extensions": {
            TLP2_EXTENSION_ID: {"extension_type": "property-extension", "tlp_2_0": level.lower()}
        },
    }


def tlp_of_definition(definition: Mapping[str, Any]) -> str | None:
    """The TLP level a marking-definition object defines, or None if it is not a TLP marking."""
    official = OFFICIAL_TLP.get(str(definition.get("id")))
    if official is not None:
        return official
    name: object = None
    if definition.get("definition_type") == "tlp" and isinstance(
        definition.get("definition"), Mapping
    ):
        name = definition["definition"].get("tlp")
    extensions = definition.get("extensions")
    if name is None and isinstance(extensions, Mapping):
        tlp2 = extensions.get(TLP2_EXTENSION_ID)
        if isinstance(tlp2, Mapping):
            name = tlp2.get("tlp_2_0")
    return _NAMES.get(name.lower()) if isinstance(name, str) else None


def tlp_definitions(objects: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Every TLP marking id a bundle's objects can refer to: the official ones, and those the
    bundle defines itself (marking-definitions that say which TLP they are)."""
    known = dict(OFFICIAL_TLP)
    for obj in objects:
        if obj.get("type") == "marking-definition" and isinstance(obj.get("id"), str):
            level = tlp_of_definition(obj)
            if level is not None and obj["id"] not in OFFICIAL_TLP:
                known[obj["id"]] = level
    return known


def marking_refs(obj: Mapping[str, Any]) -> list[str]:
    """Every marking-definition id ``obj`` refers to: ``object_marking_refs`` and each
    granular marking's ``marking_ref``."""
    refs = [r for r in _listed(obj.get("object_marking_refs")) if isinstance(r, str)]
    for granular in _listed(obj.get("granular_markings")):
        if isinstance(granular, Mapping) and isinstance(granular.get("marking_ref"), str):
            refs.append(granular["marking_ref"])
    return refs


def _listed(value: object) -> list[Any]:
    """A list as it is, a lone value as a list of one: a marking written without its list
    (invalid STIX, but seen when the validator is not installed) still counts."""
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def tlp_of_object(
    obj: Mapping[str, Any], definitions: Mapping[str, str] | None = None
) -> str | None:
    """The most restrictive TLP level ``obj`` is marked with, object-level or granular; None
    when no TLP marking applies to it. ``definitions`` maps marking ids to levels (see
    :func:`tlp_definitions`); without it, only the official ids count."""
    known = OFFICIAL_TLP if definitions is None else definitions
    levels = [known[r] for r in marking_refs(obj) if r in known]
    return max(levels, key=tlp_rank) if levels else None


def tlp_of_name(name: str) -> str | None:
    """``clear``, ``white``, ``amber+strict``… (any case) → the TLP 2.0 level, else None."""
    return _NAMES.get(name.strip().lower())
