"""MISP events in: converted to a STIX 2.1 bundle with misp-stix, their TLP tags held to the
label.

An event's ``tlp:*`` tags (on the event, its attributes and its objects' attributes; ``tlp:white``
and ``tlp:clear`` both CLEAR, ``tlp:amber+strict`` too) must be no more restrictive than the
label's TLP: a ``tlp:red`` event is not shared under a TLP:AMBER label. Other tags, and TLP tags
MISP taxonomies add beyond the five levels (``tlp:ex:chr``, ``tlp:unclear``), are left to
misp-stix, which turns them into labels. The converted bundle then goes through
:func:`clients.stix.check.check_bundle` like any other (misp-stix marks objects with the TLP 1.0
ids for ``tlp:white|green|amber|red``, which count as their TLP 2.0 equivalents).

Needs the ``cti`` extra (misp-stix): ``pip install 'tearline[cti]'``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from tearline.clients import iri_grammar
from tearline.clients.errors import StixError
from tearline.clients.protocol.encoding import EncodingError, compact_json, strict_loads
from tearline.clients.protocol.label import Label
from tearline.clients.stix.check import check_bundle
from tearline.clients.stix.markings import tlp_of_name, tlp_rank


def _event(event: Mapping[str, Any] | bytes | str) -> dict[str, Any]:
    if isinstance(event, bytes | str):
        try:
            event = strict_loads(event)
        except EncodingError as exc:
            raise StixError(
                f"the MISP event is not JSON ({exc})",
                code="invalid_misp",
                details={"findings": [str(exc)], "count": 1},
            ) from None
    if isinstance(event, Mapping) and isinstance(event.get("Event"), Mapping):
        event = event["Event"]
    if not isinstance(event, Mapping) or not (
        "Attribute" in event or "Object" in event or "info" in event
    ):
        raise StixError(
            'not a MISP event: expected a JSON object {"Event": {...}} as MISP exports one, or '
            "the event itself (with info, Attribute, Object)",
            code="invalid_misp",
            details={"findings": ["not a MISP event"], "count": 1},
        )
    return dict(event)


def _tag_names(event: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, tag name) for each tag of the event, its attributes and objects' attributes."""

    def tags(holder: Mapping[str, Any]) -> Iterator[str]:
        for tag in holder.get("Tag") or ():
            name = tag.get("name") if isinstance(tag, Mapping) else tag
            if isinstance(name, str):
                yield name

    uuid = str(event.get("uuid", "event"))
    for name in tags(event):
        yield f"event {uuid}", name
    attributes = [a for a in event.get("Attribute") or () if isinstance(a, Mapping)]
    for obj in event.get("Object") or ():
        if isinstance(obj, Mapping):
            attributes += [a for a in obj.get("Attribute") or () if isinstance(a, Mapping)]
    for attribute in attributes:
        for name in tags(attribute):
            yield f"attribute {attribute.get('uuid', '?')}", name


def tlp_of_tag(tag: str) -> str | None:
    """``tlp:amber+strict`` → ``AMBER+STRICT``, ``tlp:white`` → ``CLEAR``; None if ``tag`` is
    not one of the five TLP levels (TLP 1.0's white counted as clear)."""
    prefix, _, level = tag.strip().partition(":")
    if prefix.strip().lower() != "tlp":
        return None
    return tlp_of_name(level.strip().strip('"'))


def event_tlp(event: Mapping[str, Any] | bytes | str) -> str | None:
    """The most restrictive TLP of the event's tags, or None if it has no TLP tag."""
    levels = [lvl for _, t in _tag_names(_event(event)) if (lvl := tlp_of_tag(t)) is not None]
    return max(levels, key=tlp_rank) if levels else None


def bundle_from_misp(event: Mapping[str, Any] | bytes | str, label: Label) -> dict[str, Any]:
    """The STIX 2.1 bundle of a MISP event, checked as :func:`check_bundle` checks a bundle.

    Refuses (:class:`~clients.errors.StixError` ``stix_marking_conflict``) a label whose TLP is
    less restrictive than one of the event's TLP tags, naming each tagged part; ``invalid_misp``
    when the event cannot be read or converted."""
    misp = _event(event)
    ceiling = tlp_rank(label.tlp)
    conflicts = [
        {"id": where, "marking": f"TLP:{level}", "tag": tag}
        for where, tag in _tag_names(misp)
        if (level := tlp_of_tag(tag)) is not None and tlp_rank(level) > ceiling
    ]
    if conflicts:
        listed = ", ".join(f"{c['id']} ({c['tag']})" for c in conflicts[:5])
        raise StixError(
            f"the label says TLP:{label.tlp} but the MISP event is tagged more restrictively: "
            f"{listed}; raise the label's TLP",
            code="stix_marking_conflict",
            details={"objects": conflicts[:50], "count": len(conflicts)},
        )
    iri_grammar.defer()  # misp-stix imports jsonschema too
    try:
        from misp_stix_converter import MISPtoSTIX21Parser
    except ImportError:
        raise StixError(
            "converting MISP events needs misp-stix: pip install 'tearline[cti]'",
            code="stix_support_missing",
        ) from None
    parser = MISPtoSTIX21Parser()
    try:
        parser.parse_misp_event({"Event": misp})
        bundle = json.loads(parser.bundle.serialize())
    except Exception as exc:  # misp-stix and pymisp raise many kinds on a malformed event
        raise StixError(
            f"misp-stix could not convert the MISP event: {type(exc).__name__}: {exc}",
            code="invalid_misp",
            details={"findings": [f"{type(exc).__name__}: {exc}"], "count": 1},
        ) from None
    errors = [f"{k}: {v}" for k, v in (getattr(parser, "errors", None) or {}).items()]
    if errors:
        raise StixError(
            f"misp-stix could not convert the MISP event: {errors[0]}",
            code="invalid_misp",
            details={"findings": errors[:50], "count": len(errors)},
        )
    return check_bundle(compact_json(bundle), label)
