"""Checking ``policies/`` as read: schema validation, then cross-reference checks, then a
:class:`Policy`. Pure: the folder's names and bytes and ``now`` in, the policy and its problems out.

Every problem names the file, the line and the field. All problems are collected, so an
operator fixes a broken policy folder in one pass; the first becomes the exception's message.

The bytes are what :func:`~broker.policy.folder.read_policy_folder` read, so the policy loaded and
the fingerprint it is known by come from the same read; reading the folder and the clock is
:mod:`broker.policy.load`'s, the edge.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from tearline.broker.policy.engine import Policy
from tearline.broker.policy.fingerprint import (
    AGREEMENTS,
    GOVERNANCE,
    OPERATORS,
    PARTNERS,
    SCHEME,
    PolicyFiles,
)
from tearline.broker.policy.schema import validator
from tearline.broker.policy.yamlfile import Path as FieldPath
from tearline.broker.policy.yamlfile import dotted, line_of, load_yaml
from tearline.clients.errors import IdentityError, LabelError, PolicyError
from tearline.clients.policy.agreement import Agreement
from tearline.clients.protocol.encoding import parse_time
from tearline.clients.protocol.identity import KeyRecord, Partner, Registry
from tearline.clients.protocol.label import Scheme

REGISTRY = "governance/registry.json"


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        at = f" (field {self.field})" if self.field else ""
        return f"{where}: {self.message}{at}"


@dataclass
class _Doc:
    file: str
    data: Any
    lines: dict[FieldPath, int]

    def problem(self, path: FieldPath, message: str) -> Problem:
        return Problem(
            self.file, line_of(self.lines, path), dotted(path) if path else None, message
        )


class _Collector:
    def __init__(self, files: PolicyFiles) -> None:
        self.files = files
        self.problems: list[Problem] = [
            Problem(path, None, None, why) for path, why in sorted(files.unread.items())
        ]

    def read(self, name: str, schema: str, *, required: bool = True) -> _Doc | None:
        raw = self.files.contents.get(name)
        if raw is None:
            if required and name not in self.files.unread:  # else its problem is listed
                self.problems.append(Problem(name, None, None, "file is missing"))
            return None
        try:
            data, lines = load_yaml(raw.decode("utf-8"), name)
        except UnicodeDecodeError:
            self.problems.append(Problem(name, None, None, "not UTF-8 text"))
            return None
        except PolicyError as exc:
            self.problems.append(Problem(name, exc.line, exc.field, exc.problem))
            return None
        doc = _Doc(name, data, lines)
        errors = sorted(validator(schema).iter_errors(data), key=lambda e: list(e.absolute_path))
        for err in errors:
            at: FieldPath = tuple(err.absolute_path)
            if err.validator == "additionalProperties" and isinstance(err.instance, dict):
                # Point at each unknown key itself, not at the object that holds it.
                allowed = set(err.schema.get("properties", {}))
                for key in sorted(set(err.instance) - allowed):
                    self.problems.append(doc.problem((*at, str(key)), f"unknown field {key!r}"))
                continue
            self.problems.append(doc.problem(at, _schema_message(err)))
        return None if errors else doc


def _schema_message(err: Any) -> str:
    if err.validator == "oneOf" and err.validator_value and isinstance(err.instance, list):
        return f"{err.instance!r} is not a valid value here"
    return str(err.message)


def check_files(
    files: PolicyFiles, *, now: datetime, logged: Sequence[bytes] = ()
) -> tuple[Policy | None, list[Problem]]:
    """Load and check a policy folder as read; the policy (None if invalid) and every problem.

    Entries the reader refused (files the broker does not read, files too large to read) are
    problems like any other: the folder must hold exactly what the broker reads. A governed
    folder is checked against ``logged``, the documents the broker's transparency log already
    holds, at ``now`` (documents expire)."""
    c = _Collector(files)
    if not files.listed:
        return None, c.problems
    # Its documents are checked by the governance core, imported only when there are any: an
    # operator's plain folder is checked without loading it.
    if any(p.startswith(f"{GOVERNANCE}/") for p in (*files.contents, *files.unread)):
        return _check_governed(files, c, logged, now)
    scheme_doc = c.read(SCHEME, "scheme")
    partners_doc = c.read(PARTNERS, "partners")
    agreement_files = sorted(n for n in files.contents if n.startswith(f"{AGREEMENTS}/"))
    agreement_docs = [d for f in agreement_files if (d := c.read(f, "agreement")) is not None]

    scheme = _scheme(scheme_doc) if scheme_doc else None
    registry = _registry(partners_doc, c) if partners_doc else None
    if scheme_doc and scheme and registry is not None:
        c.problems.extend(_check_groups(scheme_doc, scheme, registry))
    agreements = []
    seen: dict[str, str] = {}
    for doc in agreement_docs:
        problems = list(_check_agreement(doc, scheme, registry))
        agreement_id = doc.data["id"]
        if agreement_id in seen:
            problems.append(
                doc.problem(("id",), f"duplicate agreement id, also in {seen[agreement_id]}")
            )
        seen.setdefault(agreement_id, doc.file)
        c.problems.extend(problems)
        if not problems:
            agreements.append(Agreement.from_dict(doc.data))
    operators = Registry([])
    # Optional: without it nobody may use the operator endpoints.
    operators_doc = c.read(OPERATORS, "operators", required=False)
    if operators_doc is not None:
        operators = _registry(operators_doc, c, "operators")
        if registry is not None:
            c.problems.extend(_check_operators(operators_doc, operators, registry))
    if c.problems or scheme is None or registry is None:
        return None, c.problems
    return Policy(scheme, registry, agreements, operators), []


def _check_governed(
    files: PolicyFiles, c: _Collector, logged: Sequence[bytes], now: datetime
) -> tuple[Policy | None, list[Problem]]:
    """A governed folder: partners, scheme and agreements come from signed documents only, so
    the operator's own files for them would be a second, unsigned source: refused."""
    for name in sorted(files.contents):
        if name in (SCHEME, PARTNERS) or name.startswith(f"{AGREEMENTS}/"):
            c.problems.append(
                Problem(
                    name,
                    None,
                    None,
                    "a governed folder (it has governance/) takes partners, scheme and "
                    "agreements from the signed documents there only: move this file out",
                )
            )
    from tearline.broker.policy.governed import verify_governed

    governed, problems = verify_governed(
        {p: b for p, b in files.contents.items() if p.startswith("governance/")}, logged, now
    )
    c.problems += [Problem(file, None, None, message) for file, message in problems]
    if governed is None:
        return None, c.problems
    scheme_doc = _Doc(REGISTRY, governed.registry.scheme, {})
    scheme = _scheme(scheme_doc)
    registry = Registry(governed.partners)
    c.problems.extend(
        Problem(REGISTRY, None, f"scheme.{p.field}" if p.field else "scheme", p.message)
        for p in _check_groups(scheme_doc, scheme, registry)
    )
    agreements = []
    for path, terms in governed.agreements.values():
        doc = _Doc(path, terms, {})
        errors = list(validator("agreement").iter_errors(terms))
        found = [doc.problem(tuple(e.absolute_path), _schema_message(e)) for e in errors]
        if not found:
            found = list(_check_agreement(doc, scheme, registry))
        c.problems.extend(found)
        if not found:
            agreements.append(Agreement.from_dict(terms))
    operators = Registry([])
    operators_doc = c.read(OPERATORS, "operators", required=False)
    if operators_doc is not None:
        operators = _registry(operators_doc, c, "operators")
        c.problems.extend(_check_operators(operators_doc, operators, registry))
    if c.problems:
        return None, c.problems
    return Policy(scheme, registry, agreements, operators, governance=governed), []


def _check_operators(doc: _Doc, operators: Registry, partners: Registry) -> Iterator[Problem]:
    """Operators and partners share one namespace of ids and of key ids: a request's keyid
    must name exactly one signer."""
    partner_kids = {k.kid for p in partners for k in p.keys}
    for i, operator in enumerate(doc.data["operators"]):
        if operator["id"] in partners:
            yield doc.problem(("operators", i, "id"), f"{operator['id']} is also a partner id")
        for j, key in enumerate(operator["keys"]):
            if key["kid"] in partner_kids:
                yield doc.problem(
                    ("operators", i, "keys", j, "kid"), f"key id {key['kid']} is a partner's"
                )


def load_files(files: PolicyFiles, *, now: datetime) -> Policy:
    """The policy in ``files`` (as read), or :class:`PolicyError` naming the first problem."""
    policy, problems = check_files(files, now=now)
    if policy is None:
        first = problems[0]
        raise PolicyError(
            first.message,
            file=first.file,
            line=first.line,
            field=first.field,
            details=[str(p) for p in problems],
        )
    return policy


def _scheme(doc: _Doc) -> Scheme:
    data = doc.data
    return Scheme(
        policy=data["policy"],
        levels=tuple(data["levels"]),
        caveats=frozenset(data.get("caveats", ())),
        groups={name: frozenset(members) for name, members in data.get("groups", {}).items()},
    )


def _registry(doc: _Doc, c: _Collector, top: str = "partners") -> Registry:
    """The registry, with each problem at the key or id that causes it. A partner with a bad
    key still counts as known, so agreements naming it report no spurious unknown partner."""
    partners: list[Partner] = []
    first_of_id: dict[str, int] = {}
    first_of_kid: dict[str, str] = {}
    for i, entry in enumerate(doc.data[top]):
        keys = []
        for j, raw in enumerate(entry["keys"]):
            where = f"{top}[{i}].keys[{j}]"
            try:
                key = KeyRecord.from_dict(raw, where)
            except IdentityError as exc:
                field = (exc.details or {}).get("field")
                path = (top, i, "keys", j, *((field,) if field else ()))
                c.problems.append(doc.problem(path, exc.message))
                continue
            if key.kid in first_of_kid:
                c.problems.append(
                    doc.problem(
                        (top, i, "keys", j, "kid"),
                        f"duplicate key id {key.kid}, first used at {first_of_kid[key.kid]}",
                    )
                )
                continue
            first_of_kid[key.kid] = where
            keys.append(key)
        pid = entry["id"]
        if pid in first_of_id:
            c.problems.append(
                doc.problem(
                    (top, i, "id"),
                    f"duplicate {top[:-1]} id {pid}, first at {top}[{first_of_id[pid]}]",
                )
            )
            continue
        first_of_id[pid] = i
        partners.append(Partner(pid, entry["name"], entry.get("status", "active"), tuple(keys)))
    return Registry(partners)


def _check_groups(doc: _Doc, scheme: Scheme, registry: Registry) -> Iterator[Problem]:
    for name, members in scheme.groups.items():
        if name in registry:
            yield doc.problem(("groups", name), f"group {name} has the same name as a partner")
        for member in sorted(members):
            if member not in registry:
                yield doc.problem(("groups", name), f"unknown partner {member} in group {name}")


def _check_agreement(
    doc: _Doc, scheme: Scheme | None, registry: Registry | None
) -> Iterator[Problem]:
    data = doc.data
    stem = PurePosixPath(doc.file).stem
    if doc.file.startswith("governance/"):  # named agreement-<id>.json, checked when verified
        stem = stem.removeprefix("agreement-")
    if data["id"] != stem:
        yield doc.problem(("id",), f"id {data['id']!r} does not match the file name {stem!r}")
    times = {}
    for name in ("valid_from", "valid_until"):
        try:
            times[name] = parse_time(data[name])
        except ValueError as exc:  # the right shape but an impossible date, such as month 13
            yield doc.problem((name,), str(exc))
    if len(times) == 2 and times["valid_from"] >= times["valid_until"]:
        yield doc.problem(("valid_until",), "valid_until must be later than valid_from")
    if scheme is not None:
        yield from _check_levels(doc, scheme)
    for pid, terms in data["parties"].items():
        if registry is not None and pid not in registry:
            yield doc.problem(("parties", pid), f"unknown partner {pid}")
        for caveat in (terms or {}).get("caveats", []):
            if scheme is not None and caveat not in scheme.caveats:
                yield doc.problem(("parties", pid, "caveats"), f"unknown caveat {caveat}")


def _check_levels(doc: _Doc, scheme: Scheme) -> Iterator[Problem]:
    data = doc.data
    fields: list[FieldPath] = [("ceiling",)]
    if "require_pq_from" in data:
        fields.append(("require_pq_from",))
    fields += [
        ("parties", p, "clearance") for p, t in data["parties"].items() if t and "clearance" in t
    ]
    for path in fields:
        value: Any = data
        for part in path:
            value = value[part]
        if not scheme.has_level(value):
            yield doc.problem(path, f"unknown classification level {value}")
    ceiling = data["ceiling"]
    if not scheme.has_level(ceiling):
        return
    for pid, terms in data["parties"].items():
        clearance = (terms or {}).get("clearance")
        if clearance and scheme.has_level(clearance):
            try:
                if scheme.rank(clearance) > scheme.rank(ceiling):
                    yield doc.problem(
                        ("parties", pid, "clearance"),
                        f"clearance {clearance} is above the agreement's ceiling {ceiling}",
                    )
            except LabelError as exc:  # pragma: no cover - has_level checked above
                yield doc.problem(("parties", pid, "clearance"), exc.message)
