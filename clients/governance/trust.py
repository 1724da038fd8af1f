"""What a node trusts: a pinned root, then only what that root's key holders signed. Pure.

Modelled on python-tuf's ``TrustedMetadataSet``: the caller pins a root (from a file, or a
digest it configured), walks newer roots one version at a time, calls
:meth:`TrustedState.check_root_not_expired`, then feeds registry versions, agreements and
agreement statuses. Every update is checked completely before anything changes, so a refused
document leaves the state exactly as it was. There is no bypass: whoever controls the broker's
files can serve documents, never make one trusted.

Thresholds count partners, not keys: a partner holding two governance keys (an old and a new
one, or a spare) counts once however many of them sign.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from tearline.clients.governance.documents import (
    AgreementStatus,
    Envelope,
    GovernanceError,
    GovernanceKey,
    RegistryVersion,
    Root,
    SignedAgreement,
    parse_agreement,
    parse_registry,
    parse_root,
    parse_status,
    signers,
)
from tearline.clients.protocol.encoding import canonical_json, format_time, parse_time
from tearline.clients.protocol.identity import Registry

__all__ = ["GovernanceError", "TrustedState", "trusted_until"]

# Which status wins when both were signed: a termination is final, a suspension is not more.
_STRENGTH = {"suspended": 1, "terminated": 2}


def _either(names: Iterable[str]) -> str:
    """``A``, ``A or B``, ``A, B or C``: the partners any one of whom would do."""
    ordered = sorted(names)
    if len(ordered) <= 1:
        return "".join(ordered)
    return f"{', '.join(ordered[:-1])} or {ordered[-1]}"


def _require_threshold(envelope: Envelope, root: Root, code: str, whose: str) -> None:
    """Refuse unless ``root.threshold`` distinct partners signed with ``root``'s keys."""
    signed_by = {k.holder for k in signers(envelope, root.keys)}
    need = root.threshold - len(signed_by)
    if need <= 0:
        return
    others = sorted(root.holders - signed_by)
    missing = (
        f"a key held by {_either(others)}"
        if need == 1
        else f"keys held by {need} of {', '.join(others)}"
    )
    raise GovernanceError(
        f"{envelope.doc_type} is not signed by the threshold of {whose}: "
        f"{len(signed_by)} of {root.threshold} required signatures; missing: {missing}",
        code=code,
        details={
            "signed_by": sorted(signed_by),
            "threshold": root.threshold,
            "missing_from": others,
        },
    )


def trusted_until(root: Root, registry: RegistryVersion) -> datetime:
    """The earlier of the two expiries. An agreement is in force only while the root and the
    registry it was verified under are: a registry that expires while in force (frozen: its
    holders stopped signing, or someone keeps them from it) then routes nothing, at the broker
    and at every node alike."""
    return min(root.expires, registry.expires)


def _check_aware(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")


class TrustedState:
    """The governance documents a node trusts, each checked against the root it trusts."""

    def __init__(self, root_bytes: bytes, now: datetime) -> None:
        """Trust ``root_bytes`` as pinned by the caller. Its expiry is not checked here: a node
        pinned long ago first walks the chain of newer roots (:meth:`update_root`), then calls
        :meth:`check_root_not_expired`. It must still be signed by its own threshold."""
        _check_aware(now)
        root = parse_root(root_bytes)
        _require_threshold(root.envelope, root, "root_threshold", "its own keys")
        self._root = root
        self._registry: RegistryVersion | None = None
        self._registry_bytes: bytes | None = None
        self._partners: Registry | None = None
        self._agreements: dict[str, SignedAgreement] = {}
        self._statuses: dict[str, AgreementStatus] = {}

    # --- root -----------------------------------------------------------------------------

    @property
    def root(self) -> Root:
        return self._root

    def update_root(self, new_root_bytes: bytes, now: datetime) -> Root:
        """Trust the next root: version current+1, signed by the threshold of the current root's
        keys (who hand over) and of its own (who take over). Expiry is not checked: an
        intermediate root of the chain may have expired long ago."""
        _check_aware(now)
        current = self._root
        new = parse_root(new_root_bytes)
        _require_threshold(
            new.envelope, current, "root_threshold", f"the current root (version {current.version})"
        )
        _require_threshold(
            new.envelope, new, "root_threshold", f"the new root (version {new.version})'s own keys"
        )
        if new.version <= current.version:
            raise GovernanceError(
                f"root version {new.version} is not newer than the trusted version "
                f"{current.version}",
                code="root_rollback",
            )
        if new.version != current.version + 1:
            raise GovernanceError(
                f"root version {new.version} skips versions: the next one is "
                f"{current.version + 1}; each root is signed by the holders of the one before",
                code="root_version_skipped",
            )
        self._root = new
        return new

    def check_root_not_expired(self, now: datetime) -> None:
        if self._root.expired(now):
            raise GovernanceError(
                f"the trusted root (version {self._root.version}) expired at "
                f"{format_time(self._root.expires)}: its key holders must sign a new one",
                code="root_expired",
            )

    # --- registry -------------------------------------------------------------------------

    def update_registry(self, data: bytes, now: datetime) -> RegistryVersion:
        """Trust a registry version signed by the root's threshold, newer than the trusted one
        (the same bytes again are a no-op), and not expired."""
        _check_aware(now)
        self.check_root_not_expired(now)
        new = parse_registry(data)
        _require_threshold(
            new.envelope, self._root, "registry_threshold", f"root version {self._root.version}"
        )
        old = self._registry
        if old is not None and new.version < old.version:
            raise GovernanceError(
                f"registry version {new.version} is older than the trusted version {old.version}",
                code="registry_rollback",
            )
        if old is not None and new.version == old.version and data != self._registry_bytes:
            # Two different documents under one version: someone signed a fork, or the bytes
            # were changed; either way neither can be told apart from the other by version.
            raise GovernanceError(
                f"registry version {new.version} is already trusted with other contents",
                code="registry_version_conflict",
            )
        if new.expired(now):
            # Checked even for the bytes already trusted: serving them forever is the freeze.
            raise GovernanceError(
                f"registry version {new.version} expired at {format_time(new.expires)}: "
                "a newer one is being withheld, or its signers must publish one",
                code="registry_expired",
            )
        if old is not None and new.version == old.version:
            return old
        self._partners = Registry(new.partners)
        self._registry, self._registry_bytes = new, data
        return new

    @property
    def registry_version(self) -> RegistryVersion | None:
        return self._registry

    @property
    def registry(self) -> Registry:
        """The partners and keys of the trusted registry version."""
        if self._partners is None:
            raise GovernanceError("no registry version is trusted yet", code="no_registry")
        return self._partners

    @property
    def scheme(self) -> dict[str, Any]:
        """The marking scheme of the trusted registry version (a copy)."""
        if self._registry is None:
            raise GovernanceError("no registry version is trusted yet", code="no_registry")
        return copy.deepcopy(dict(self._registry.scheme))

    # --- agreements -----------------------------------------------------------------------

    def verify_agreement(self, data: bytes) -> SignedAgreement:
        """Trust an agreement signed by every one of its parties, each with a governance key it
        holds. A party that holds no key in the root cannot sign, so the agreement waits."""
        new = parse_agreement(data)
        holders = {k.holder for k in signers(new.envelope, self._root.keys)}
        missing = sorted(new.parties - holders)
        if missing:
            who = f"each of {', '.join(missing)}" if len(missing) > 1 else missing[0]
            keyless = sorted(set(missing) - self._root.holders)
            note = f" ({', '.join(keyless)} hold(s) no governance key)" if keyless else ""
            raise GovernanceError(
                f"agreement {new.id} is not signed by all its parties; signed by "
                f"{', '.join(sorted(new.parties & holders)) or 'none'}; missing: a key held by "
                f"{who}{note}",
                code="agreement_unsigned",
                details={"missing": missing},
            )
        known = self._agreements.get(new.id)
        if known is not None:
            if canonical_json(known.agreement) != canonical_json(new.agreement):
                # No versions for agreements: an amendment is a new agreement id, so an old
                # text signed long ago can never come back in place of a newer one.
                raise GovernanceError(
                    f"agreement {new.id} is already trusted with other terms; an amendment "
                    "takes a new agreement id",
                    code="agreement_conflict",
                )
            return known
        self._agreements[new.id] = new
        return new

    def apply_status(self, data: bytes) -> AgreementStatus:
        """Suspend or terminate a trusted agreement on the signature of any one of its parties:
        each party may stop sharing on its own. A termination is final."""
        new = parse_status(data)
        agreement = self._agreements.get(new.agreement)
        if agreement is None:
            raise GovernanceError(
                f"agreement {new.agreement} is not trusted here, so who may suspend it is unknown",
                code="status_unknown_agreement",
            )
        valid: frozenset[GovernanceKey] = signers(new.envelope, self._root.keys)
        if not valid:
            raise GovernanceError(
                f"the {new.status} status of {new.agreement} carries no valid governance "
                f"signature; missing: a key held by {_either(agreement.parties)}",
                code="status_unsigned",
            )
        if not {k.holder for k in valid} & agreement.parties:
            raise GovernanceError(
                f"the {new.status} status of {new.agreement} is signed by "
                f"{', '.join(sorted({k.holder for k in valid}))}, not a party of it; missing: "
                f"a key held by {_either(agreement.parties)}",
                code="status_not_a_party",
            )
        known = self._statuses.get(new.agreement)
        if known is None or _STRENGTH[new.status] > _STRENGTH[known.status]:
            self._statuses[new.agreement] = new
            return new
        return known

    @property
    def signed_agreements(self) -> frozenset[str]:
        """The id of every agreement signed by all its parties, suspended or not."""
        return frozenset(self._agreements)

    def status(self, agreement_id: str) -> AgreementStatus | None:
        return self._statuses.get(agreement_id)

    def terms_in_force(self) -> dict[str, dict[str, Any]]:
        """Agreement id → its terms as the releasability engine applies them (a copy), for
        every agreement signed by all its parties: a signed suspension as ``suspended: true``,
        a termination as ``valid_until`` the time it was issued, and no agreement in force past
        the expiry of the root or registry it was verified under. The broker and every node
        derive what is in force here, so the two cannot disagree on a status or a date."""
        if self._registry is None:
            raise GovernanceError("no registry version is trusted yet", code="no_registry")
        until = trusted_until(self._root, self._registry)
        out: dict[str, dict[str, Any]] = {}
        for aid, signed in sorted(self._agreements.items()):
            terms = copy.deepcopy(dict(signed.agreement))
            stopped = self._statuses.get(aid)
            if stopped is not None and stopped.status == "suspended":
                terms["suspended"] = True
            elif stopped is not None:  # terminated: it ended when a party signed that it did
                if stopped.issued <= parse_time(terms["valid_from"]):
                    terms["suspended"] = True  # ended before it began: never in force
                elif stopped.issued < parse_time(terms["valid_until"]):
                    terms["valid_until"] = format_time(stopped.issued)
            if until < parse_time(terms["valid_until"]):
                terms["valid_until"] = format_time(until)  # maybe before it begins: never
            out[aid] = terms
        return out

    @property
    def agreements(self) -> dict[str, dict[str, Any]]:
        """Agreement id → agreement (a copy), for every agreement signed by all its parties and
        neither suspended nor terminated. Its dates are for the policy engine to apply."""
        return {
            aid: copy.deepcopy(dict(signed.agreement))
            for aid, signed in sorted(self._agreements.items())
            if aid not in self._statuses
        }
