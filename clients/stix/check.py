"""STIX 2.1 bundles checked before sealing: valid STIX 2.1, and marked no higher than the label.

Which checker, by what each catches and costs (``python -m bench.bench_stix``: a valid
1,000-object bundle of identities, indicators, malware and relationships, on the shared 2-core
development machine; medians of 7, written to bench/results/stix.json):

- ``stix2validator.validate_parsed_json`` (stix2-validator 3.3.2: the STIX 2.1 JSON schemas and
  the specification's MUSTs): 2.9-3.3 s a bundle, about 3 ms an object (5.4 s with the machine
  busy); nearly all of it is jsonschema resolving ``$ref`` pointers, and caching validators gains
  nothing. Importing it cost 2 s, 1.5 s of which was rfc3987-syntax building a grammar for
  jsonschema's ``iri`` format checker, which the STIX schemas do not use: that grammar is now
  built on the first ``iri`` checked, if any (:mod:`clients.iri_grammar`). It catches a
  missing ``id``, a bad timestamp or one not to the millisecond, an id that is not
  ``type--UUID``, ``modified`` before ``created``, an indicator pattern that does not parse, a
  missing required property, a granular-marking selector that selects nothing, a TLP 1.0
  definition under an unofficial id.
  With ``strict=False`` the SHOULDs (vocabularies, custom properties and object types not done
  as extensions, names and descriptions) are warnings, so bundles real tools write pass.
- ``stix2.parse(..., allow_custom=True)`` (stix2 3.0.2, the object model): 0.55-0.6 s a bundle,
  five times cheaper, but it is a constructor, not a checker: it makes up an ``id`` that is
  missing, lets through timestamps that are not to the millisecond and a ``modified`` before
  ``created``, refuses a bundle with no objects, and stops at the first problem.
- Neither sees a TLP:RED object in a TLP:AMBER report; the validator takes ``spec_version``
  ``2.0`` content as 2.1 (a warning), and an SDO without ``spec_version`` as STIX 2.0
  (reporting a confusing missing ``labels``).

So: stix2-validator (non-strict), after checks of Tearline's own: the bytes are JSON (no
duplicate keys) holding one bundle, of objects each with a ``type`` and an ``id`` of the form
``type--UUID``, every ``spec_version`` ``2.1`` (8 ms for 1,000 objects), and after it the
marking check (6 ms). The chosen combination costs what the validator does. An empty bundle
skips the validator: it has nothing to check there that the shape checks did not.

Without the ``cti`` extra (stix2-validator not installed) the checks here still run, the
marking check among them, and the schema validation is skipped with a warning on the
``tearline.client`` logger: ``pip install 'tearline[cti]'`` for all of them.

Markings: the label's TLP must be at least as restrictive as every TLP marking in the bundle,
object-level and granular (see :mod:`clients.stix.markings` for the ids, TLP 1.0 counted as
its 2.0 equivalent); otherwise :class:`~clients.errors.StixError` ``stix_marking_conflict``
names each object that is marked higher.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, Final

from tearline.clients import iri_grammar
from tearline.clients.errors import StixError
from tearline.clients.protocol.encoding import EncodingError, strict_loads
from tearline.clients.protocol.label import Label
from tearline.clients.stix.markings import tlp_definitions, tlp_of_object, tlp_rank

log = logging.getLogger("tearline.client")

#: How many findings a refusal lists; ``details["count"]`` says how many there were.
MAX_FINDINGS: Final = 50
_ID: Final = re.compile(
    r"[a-z0-9][a-z0-9-]*[a-z0-9]--[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    re.ASCII,
)
#: STIX 2.1 cyber-observable types: ``spec_version`` is optional on these, required elsewhere.
_OBSERVABLES: Final = frozenset(
    {
        "artifact", "autonomous-system", "directory", "domain-name", "email-addr",
        "email-message", "file", "ipv4-addr", "ipv6-addr", "mac-addr", "mutex",
        "network-traffic", "process", "software", "url", "user-account", "windows-registry-key",
        "x509-certificate",
    }
)  # fmt: skip


def is_stix_content_type(content_type: str) -> bool:
    """Whether a payload of ``content_type`` is STIX 2.1, and so checked before sealing:
    ``application/stix+json`` with ``version=2.1`` or no version (any case and spacing)."""
    media, *params = (p.strip().lower() for p in content_type.split(";"))
    if media != "application/stix+json":
        return False
    versions = [p.partition("=")[2].strip().strip('"') for p in params if p.startswith("version")]
    return not versions or versions == ["2.1"]


def _refuse(message: str, findings: list[str]) -> StixError:
    return StixError(
        message,
        code="invalid_stix",
        details={"findings": findings[:MAX_FINDINGS], "count": len(findings)},
    )


def parse_bundle(payload: bytes | str) -> dict[str, Any]:
    """The payload as a JSON STIX bundle, its shape checked (not yet validated as STIX)."""
    try:
        data = strict_loads(payload)
    except EncodingError as exc:
        raw = payload.encode() if isinstance(payload, str) else payload
        what = "malformed JSON" if raw.lstrip()[:1] in (b"{", b"[") else "not JSON"
        raise _refuse(
            f"the payload is not a STIX 2.1 bundle: it is {what} ({exc})",
            [f"not JSON: {exc}"],
        ) from None
    if not isinstance(data, dict) or data.get("type") != "bundle":
        what = f"a JSON object of type {data.get('type')!r}" if isinstance(data, dict) else (
            f"a JSON {type(data).__name__}"
        )  # fmt: skip
        raise _refuse(
            f"the payload is not a STIX 2.1 bundle: it is {what}; a bundle is a JSON object "
            'with "type": "bundle"',
            [f"not a bundle: {what}"],
        )
    findings = _shape_findings(data)
    if findings:
        raise _refuse(_summary(findings), findings)
    return data


def _shape_findings(bundle: Mapping[str, Any]) -> list[str]:
    findings = []
    bid = bundle.get("id")
    if not isinstance(bid, str) or not _ID.fullmatch(bid) or not bid.startswith("bundle--"):
        findings.append("the bundle has no id of the form bundle--UUID")
    if "spec_version" in bundle:
        findings.append(
            f"the bundle has spec_version {bundle['spec_version']!r}: that is STIX 2.0; a STIX "
            "2.1 bundle has none"
        )
    objects = bundle.get("objects", [])
    if not isinstance(objects, list):
        return [*findings, "the bundle's objects is not a list"]
    for n, obj in enumerate(objects):
        if not isinstance(obj, dict):
            findings.append(f"objects[{n}] is not a JSON object")
            continue
        kind, oid = obj.get("type"), obj.get("id")
        name = oid if isinstance(oid, str) else f"objects[{n}]"
        if not isinstance(kind, str) or not kind:
            findings.append(f"{name}: no type")
        if not isinstance(oid, str):
            findings.append(f"objects[{n}] ({kind}): no id")
        elif not _ID.fullmatch(oid) or (isinstance(kind, str) and not oid.startswith(kind + "--")):
            findings.append(f"{name}: the id is not of the form {kind}--UUID")
        version = obj.get("spec_version")
        if version is None and kind not in _OBSERVABLES:
            findings.append(f'{name}: no spec_version (STIX 2.1 objects say "2.1")')
        elif version is not None and version != "2.1":
            findings.append(f"{name}: spec_version {version!r}, not 2.1")
    return findings


def _summary(findings: list[str]) -> str:
    more = f" (and {len(findings) - 1} more finding(s))" if len(findings) > 1 else ""
    return f"the payload is not a valid STIX 2.1 bundle: {findings[0]}{more}"


def validate(bundle: Mapping[str, Any]) -> list[str]:
    """stix2-validator's errors for ``bundle`` (its warnings are not refusals); empty if valid,
    or if stix2-validator is not installed (logged)."""
    iri_grammar.defer()  # importing it would otherwise build an IRI grammar it never uses
    try:
        from stix2validator import ValidationOptions, validate_parsed_json
        from stix2validator.errors import ValidationError
    except ImportError:
        log.warning(
            "STIX schema validation skipped: stix2-validator is not installed "
            "(pip install 'tearline[cti]'); the bundle's shape and markings were checked"
        )
        return []
    options = ValidationOptions(version="2.1", strict=False, silent=True)
    try:
        results = validate_parsed_json(bundle, options)
    except ValidationError as exc:
        return [str(exc)]
    except Exception as exc:  # a validator bug on odd input is a refusal, not a traceback
        return [f"stix2-validator could not check it: {type(exc).__name__}: {exc}"]
    out = results if isinstance(results, list) else [results]
    return [str(e) for r in out for e in r.errors]


def marking_conflicts(bundle: Mapping[str, Any], label: Label) -> list[dict[str, str]]:
    """Each object whose TLP marking is more restrictive than the label's, with that marking."""
    objects = [o for o in bundle.get("objects", []) if isinstance(o, dict)]
    definitions = tlp_definitions(objects)
    ceiling = tlp_rank(label.tlp)
    out = []
    for obj in objects:
        level = tlp_of_object(obj, definitions)
        if level is not None and tlp_rank(level) > ceiling:
            out.append({"id": str(obj.get("id")), "marking": f"TLP:{level}"})
    return out


def check_markings(bundle: Mapping[str, Any], label: Label) -> None:
    """Refuse a bundle with an object marked more restrictively than the label's TLP."""
    conflicts = marking_conflicts(bundle, label)
    if conflicts:
        listed = ", ".join(f"{c['id']} ({c['marking']})" for c in conflicts[:5])
        more = f" and {len(conflicts) - 5} more" if len(conflicts) > 5 else ""
        raise StixError(
            f"the label says TLP:{label.tlp} but {len(conflicts)} object(s) in the bundle are "
            f"marked more restrictively: {listed}{more}; raise the label's TLP or remove them",
            code="stix_marking_conflict",
            details={"objects": conflicts[:MAX_FINDINGS], "count": len(conflicts)},
        )


def check_bundle(payload: bytes | str, label: Label) -> dict[str, Any]:
    """Parse ``payload`` as a STIX 2.1 bundle, validate it and check that its TLP markings are
    no more restrictive than ``label``'s TLP; return the parsed bundle.

    Raises :class:`~clients.errors.StixError`: ``invalid_stix`` with ``details["findings"]``
    (the first :data:`MAX_FINDINGS`) and ``details["count"]``, or ``stix_marking_conflict``
    with ``details["objects"]``, each ``{"id", "marking"}``."""
    bundle = parse_bundle(payload)
    # An empty bundle is all shape, checked above: the validator (2 s to import) has nothing
    # more to say of it.
    findings = validate(bundle) if bundle.get("objects") else []
    if findings:
        raise _refuse(_summary(findings), findings)
    check_markings(bundle, label)
    return bundle
