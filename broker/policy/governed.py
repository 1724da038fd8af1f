"""A governed policy folder: partners, scheme and agreements from documents partners signed. Pure.

In a governed folder (``governance/`` in ``policies/``) the operator keeps files, and decides
nothing: the registry (partners, keys, status, scheme) counts only when the root's threshold of
key holders signed it, and an agreement only when every party did (docs/protocol.md §11). What
the broker has already published in its transparency log (``logged``, the leaves in order) binds
it too: the root it first trusted stays the anchor of the chain, a registry older than one it
published is a rollback, and a suspension or termination once published stays in force even
if its file is deleted. The checks are :class:`~clients.governance.trust.TrustedState`'s, the
same code partner nodes run.

An agreement that is not signed by all its parties, or a status that no party signed, does not
stop the folder from loading: it is not in force, and :attr:`Governed.ignored` says why (``policy
explain`` and ``GET /v1/status`` show it). A registry or root that does not verify refuses the
folder: without one there is nobody to route to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from tearline.clients.errors import TearlineError
from tearline.clients.governance.documents import (
    AgreementStatus,
    RegistryVersion,
    Root,
    SignedAgreement,
    parse_agreement,
    parse_envelope,
    parse_registry,
    parse_root,
)
from tearline.clients.governance.trust import TrustedState, trusted_until
from tearline.clients.protocol.encoding import format_time
from tearline.clients.protocol.identity import Partner

PREFIX: Final = "governance/"
REGISTRY_FILE: Final = "governance/registry.json"


@dataclass(frozen=True, slots=True)
class Governed:
    """What a governed folder puts in force, and what it holds that is not in force."""

    root: Root
    registry: RegistryVersion
    #: Agreement id → (file, the agreement as ``agreements/*.yaml`` holds it), with a signed
    #: suspension as ``suspended: true`` and a termination as ``valid_until`` its time.
    agreements: Mapping[str, tuple[str, dict[str, Any]]]
    #: File → why it is not in force (an agreement some party has not signed, a bad status).
    ignored: Mapping[str, str] = field(default_factory=dict)
    #: Agreement id → (its parties, why it is not in force), for ``policy explain``.
    unsigned: Mapping[str, tuple[frozenset[str], str]] = field(default_factory=dict)
    #: Every document in force, as bytes, in the order the log appends them: the root chain,
    #: the registry, agreements, statuses.
    documents: tuple[bytes, ...] = ()

    @property
    def partners(self) -> tuple[Partner, ...]:
        return self.registry.partners

    @property
    def expires(self) -> datetime:
        """When the documents in force stop being trusted; no agreement is in force past it."""
        return trusted_until(self.root, self.registry)

    def summary(self) -> dict[str, Any]:
        return {
            "root_version": self.root.version,
            "root_expires": format_time(self.root.expires),
            "threshold": self.root.threshold,
            "registry_version": self.registry.version,
            "registry_expires": format_time(self.registry.expires),
            "agreements_signed": sorted(self.agreements),
            "not_in_force": dict(sorted(self.ignored.items())),
        }


def is_governed(paths: Sequence[str] | Mapping[str, bytes]) -> bool:
    return any(p.startswith(PREFIX) for p in paths)


def _type_of(data: bytes) -> str | None:
    try:
        return parse_envelope(data).doc_type
    except TearlineError:
        return None


def verify_governed(
    files: Mapping[str, bytes], logged: Sequence[bytes], now: datetime
) -> tuple[Governed | None, list[tuple[str, str]]]:
    """The governed policy in ``files`` (path → bytes) checked against what the log already
    holds; or None and each problem as ``(file, message)``."""
    problems: list[tuple[str, str]] = []
    logged_by_type: dict[str, list[bytes]] = {}
    for leaf in logged:
        t = _type_of(leaf)
        if t is not None:
            logged_by_type.setdefault(t, []).append(leaf)

    trust = _trusted_root(files, logged_by_type.get("root", []), now, problems)
    if trust is None:
        return None, problems
    registry = _registry(files, logged_by_type.get("registry", []), trust, now, problems)
    if registry is None:
        return None, problems

    ignored: dict[str, str] = {}
    unsigned: dict[str, tuple[frozenset[str], str]] = {}
    trusted_agreements: dict[str, tuple[str, SignedAgreement]] = {}
    for path in sorted(p for p in files if p.startswith(f"{PREFIX}agreement-")):
        try:
            signed = trust.verify_agreement(files[path])
        except TearlineError as exc:
            ignored[path] = f"not in force: {exc.message}"
            try:
                parsed = parse_agreement(files[path])
                unsigned[parsed.id] = (parsed.parties, exc.message)
            except TearlineError:
                pass  # not even an agreement: no pair of partners to explain it to
            continue
        expected = f"{PREFIX}agreement-{signed.id}.json"
        if path != expected:
            problems.append((path, f"holds agreement {signed.id}: name it {expected}"))
            continue
        trusted_agreements[signed.id] = (path, signed)

    statuses: list[AgreementStatus] = []
    status_bytes: list[bytes] = []
    folder_statuses = [(p, files[p]) for p in sorted(files) if p.startswith(f"{PREFIX}status-")]
    logged_statuses = [
        ("the transparency log", b) for b in logged_by_type.get("agreement-status", [])
    ]
    for where, data in [*logged_statuses, *folder_statuses]:
        try:
            status = trust.apply_status(data)
        except TearlineError as exc:
            if where != "the transparency log":  # one published earlier: its agreement left
                ignored[where] = f"not in force: {exc.message}"
            continue
        if status not in statuses:
            statuses.append(status)
            status_bytes.append(data)

    version = trust.registry_version
    assert version is not None  # _registry trusted one
    in_force = trust.terms_in_force()
    agreements = {aid: (path, in_force[aid]) for aid, (path, _) in trusted_agreements.items()}

    if problems:
        return None, problems
    documents = (
        *_root_chain(files, logged_by_type.get("root", []), trust.root.version),
        registry,
        *(files[path] for path, _ in trusted_agreements.values()),
        *status_bytes,
    )
    return (
        Governed(trust.root, version, agreements, ignored, unsigned, tuple(documents)),
        [],
    )


def _roots(
    files: Mapping[str, bytes], logged: Sequence[bytes], problems: list[tuple[str, str]]
) -> dict[int, tuple[str, bytes]]:
    """Root version → (where, bytes), from the log and the folder; the two must agree."""
    out: dict[int, tuple[str, bytes]] = {}
    for data in logged:
        try:
            out[parse_root(data).version] = ("the transparency log", data)
        except TearlineError:
            continue
    for path in sorted(p for p in files if p.startswith(f"{PREFIX}root-")):
        data = files[path]
        try:
            root = parse_root(data)
        except TearlineError as exc:
            problems.append((path, exc.message))
            continue
        if path != f"{PREFIX}root-{root.version}.json":
            problems.append(
                (path, f"holds root version {root.version}: name it root-{root.version}.json")
            )
            continue
        known = out.get(root.version)
        if known is not None and known[1] != data:
            problems.append(
                (
                    path,
                    f"root version {root.version} differs from the one this broker already "
                    "published in its transparency log; a root is replaced only by the next "
                    "version, signed by the holders of this one",
                )
            )
            continue
        out.setdefault(root.version, (path, data))
    return out


def _trusted_root(
    files: Mapping[str, bytes],
    logged: Sequence[bytes],
    now: datetime,
    problems: list[tuple[str, str]],
) -> TrustedState | None:
    roots = _roots(files, logged, problems)
    if problems:
        return None
    if not roots:
        problems.append(
            (
                PREFIX,
                "no root: a governed folder holds governance/root-1.json (and each later "
                "version), signed by its key holders (`tearline governance root new`)",
            )
        )
        return None
    first = min(roots)
    where, data = roots[first]
    try:
        trust = TrustedState(data, now)
    except TearlineError as exc:
        problems.append((where, exc.message))
        return None
    for version in sorted(roots)[1:]:
        where, data = roots[version]
        try:
            trust.update_root(data, now)
        except TearlineError as exc:
            problems.append((where, exc.message))
            return None
    try:
        trust.check_root_not_expired(now)
    except TearlineError as exc:
        problems.append((roots[max(roots)][0], exc.message))
        return None
    return trust


def _root_chain(files: Mapping[str, bytes], logged: Sequence[bytes], upto: int) -> list[bytes]:
    roots = _roots(files, logged, [])
    return [roots[v][1] for v in sorted(roots) if v <= upto]


def _registry(
    files: Mapping[str, bytes],
    logged: Sequence[bytes],
    trust: TrustedState,
    now: datetime,
    problems: list[tuple[str, str]],
) -> bytes | None:
    data = files.get(REGISTRY_FILE)
    if data is None:
        problems.append(
            (REGISTRY_FILE, "file is missing: a governed folder takes its partners from it")
        )
        return None
    try:
        candidate = parse_registry(data)
    except TearlineError as exc:
        problems.append((REGISTRY_FILE, exc.message))
        return None
    for old in logged:
        try:
            published = parse_registry(old)
        except TearlineError:
            continue
        if published.version > candidate.version:
            problems.append(
                (
                    REGISTRY_FILE,
                    f"registry version {candidate.version} is older than version "
                    f"{published.version}, which this broker already published: a rollback "
                    "(an older registry could reinstate a key or a partner since removed)",
                )
            )
            return None
        if published.version == candidate.version and old != data:
            problems.append(
                (
                    REGISTRY_FILE,
                    f"registry version {candidate.version} differs from the version "
                    f"{candidate.version} already published; a change takes a new version",
                )
            )
            return None
    try:
        trust.update_registry(data, now)
    except TearlineError as exc:
        problems.append((REGISTRY_FILE, exc.message))
        return None
    return data
