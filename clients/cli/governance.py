"""``tearline governance``, ``registry`` and ``agreement``: the governed registry's offline tools.

Files in, files out, never the network: a governance key may live on an air-gapped machine, and
a document travels between its signers as a file. Every check is the pure core's
(:mod:`clients.governance`); these commands only read, write and say what it decided.

``registry publish`` and ``agreement publish`` are what an operator runs to copy a document its
signers finished into the broker's policy folder (``policies/governance/``). It is checked first
as the broker will check it: the root chain in the folder, the threshold, no rollback against
the registry there, every party's signature. A document that would be refused is not copied,
and the message says which signatures are missing. The file is written aside and renamed into
place, so the broker never reads half of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from collections.abc import Callable, Hashable, Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

# The governance core, its cryptography and yaml are imported where a command uses them, not
# here: `tearline --help` imports this module for the commands' signatures alone.
from tearline.clients.cli.common import (
    DEFAULT_POLICIES,
    PoliciesOption,
    RootOption,
    fail,
    root_document,
)
from tearline.clients.errors import TearlineError
from tearline.clients.help_format import group
from tearline.clients.protocol.encoding import EncodingError, b64d, b64e, format_time, parse_time
from tearline.clients.protocol.encoding import strict_loads as _json

if TYPE_CHECKING:
    import yaml

    from tearline.clients.governance import documents as gd
    from tearline.clients.governance.documents import GovernanceKey
    from tearline.clients.governance.trust import TrustedState

D = TypeVar("D", bound="gd.Document")
KEY_FIELDS = {"holder", "public", "private"}

governance_app = group("Governance keys and the root (offline).")
root_app = group("Draft and sign the root (offline).")
governance_app.add_typer(root_app, name="root")
registry_app = group("Propose, sign, verify registry versions.")
agreement_app = group("Propose, sign, verify, stop agreements.")

KeyOption = Annotated[
    Path, typer.Option("--key", help="Your governance key file (governance keygen's).")
]
OutOption = Annotated[Path, typer.Option("--out", help="The file to write; never overwritten.")]
SignOut = Annotated[
    Path | None,
    typer.Option("--out", help="The file to write the signed copy to (default: in place)."),
]
DocArgument = Annotated[Path, typer.Argument(help="The document file.")]
SignedArgument = Annotated[Path, typer.Argument(help="The signed document file.")]
ExpiresOption = Annotated[str, typer.Option(help="RFC 3339, like 2027-12-01T00:00:00Z.")]
AgreementId = Annotated[str, typer.Option("--id", help="The agreement's id.")]


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    """A refusal is one line: exit 1 when a document does not verify, 2 when the input is not
    a document or key at all (a usage error, as elsewhere in ``tearline``)."""
    from tearline.clients.governance.documents import GovernanceError

    try:
        yield
    except GovernanceError as exc:
        raise fail(f"{exc.message} ({exc.code})", 2 if exc.code == "bad_document" else 1) from None
    except TearlineError as exc:
        raise fail(exc.message, 2) from None


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {what} {path}: {exc.strerror}", 2) from None


def _create(path: Path, data: bytes, mode: int = 0o644) -> None:
    # O_EXCL: a key may already be in use, a document may already carry signatures.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise fail(f"{path} already exists; refusing to overwrite it", 2) from None
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc.strerror}", 2) from None
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _write_signed(document: Path, out: Path | None, data: bytes) -> Path:
    if out is not None and out.resolve() != document.resolve():
        _create(out, data)
        return out
    # Through a temporary file: a crash mid-write must not lose the signatures gathered so far.
    import tempfile  # here: only signing in place needs it, not `tearline --help`

    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(dir=document.parent, prefix=f".{document.name}.")
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.chmod(tmp, stat.S_IMODE(document.stat().st_mode))
        os.replace(tmp, document)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # "" when mkstemp itself failed: nothing to remove
        raise fail(f"cannot write {document}: {exc.strerror}", 2) from None
    return document


def _key(path: Path, *, private: bool) -> tuple[GovernanceKey, bytes]:
    """A key file's public key and holder, and with ``private`` its private key (else b"")."""
    from tearline.clients.governance import documents as gd
    from tearline.clients.protocol import crypto
    from tearline.clients.protocol.identity import check_partner_id

    obj: Any = None
    with contextlib.suppress(EncodingError):
        obj = _json(_read(path, "key file"))
    not_a_key = f"{path} is not a governance key file (tearline governance keygen writes them)"
    if not isinstance(obj, dict) or not {"holder", "public"} <= set(obj) <= KEY_FIELDS:
        raise fail(not_a_key, 2)
    try:
        holder = check_partner_id(obj["holder"], "holder")
        public = b64d(obj["public"])
        crypto.VerifyKey(crypto.ED25519, public)
        secret = b64d(obj["private"]) if "private" in obj else b""
        if secret and crypto.public_key_of(crypto.ED25519, secret) != public:
            raise crypto.CryptoFailure("the private key is not the public key's")
    except (TearlineError, EncodingError, crypto.CryptoFailure):
        raise fail(f"{not_a_key}: its holder or keys are malformed", 2) from None
    if private and not secret:
        raise fail(f"{path} holds only a public key; sign with the private key file", 2)
    if private and stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise fail(f"key file {path} is readable by other users; run: chmod 600 {path}", 2)
    return gd.GovernanceKey(gd.keyid_of(public), public, holder), secret


@contextlib.contextmanager
def _about(source: object) -> Iterator[None]:
    """A refusal names the file (or option) it is about."""
    from tearline.clients.governance.documents import GovernanceError

    try:
        yield
    except GovernanceError as exc:
        raise GovernanceError(f"{source}: {exc.message}", code=exc.code) from None


def _root(root: str | None) -> bytes:
    """The root ``--root`` names, as a document to verify against: its file, parsed as a root
    (a refusal names the file); a digest is refused, it holds none of the root's keys."""
    from tearline.clients.governance import documents as gd

    data = root_document(root)
    with _about(root):
        gd.parse_root(data)
    return data


def _document(path: Path, parser: Callable[[bytes], D]) -> tuple[bytes, D]:
    data = _read(path, "document")
    with _about(path):
        parsed = parser(data)
    return data, parsed


@cache
def _yaml_loader() -> type[yaml.SafeLoader]:
    """Policy YAML read as the broker reads it: timestamps stay the strings the operator wrote,
    ``NO`` stays Norway rather than false, and a key given twice is an error, not a guess."""
    import yaml

    class YamlLoader(yaml.SafeLoader):
        def construct_mapping(
            self, node: yaml.MappingNode, deep: bool = False
        ) -> dict[Hashable, Any]:
            seen: set[object] = set()
            for key_node, _ in node.value:
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                    )
                seen.add(key_node.value)
            return super().construct_mapping(node, deep)

    YamlLoader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if not tag.endswith((":bool", ":timestamp"))]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    YamlLoader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|false)$"), "tf"
    )
    return YamlLoader


def _yaml(path: Path) -> Any:
    import yaml

    try:
        loader = _yaml_loader()
        return yaml.load(_read(path, "YAML file").decode("utf-8"), Loader=loader)  # noqa: S506
    except UnicodeDecodeError:
        raise fail(f"{path} is not UTF-8 text", 2) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise fail(f"{where}: not valid YAML: {exc.problem or exc.context}", 2) from None
    except yaml.YAMLError as exc:
        raise fail(f"{path}: not valid YAML: {exc}", 2) from None


def _new(signed: dict[str, Any], out: Path, source: str) -> None:
    from tearline.clients.governance import documents as gd

    try:
        with _about(source):
            data = gd.new_document(signed)  # refused unless it parses as its type
    except (TypeError, ValueError):  # a YAML value JSON cannot carry: a float, a binary
        raise fail(f"{source}: holds a value canonical JSON cannot encode", 2) from None
    _create(out, data)


def _expires(text: str) -> str:
    try:
        moment = parse_time(text)
    except EncodingError as exc:
        raise fail(f"--expires: {exc}", 2) from None
    if moment <= datetime.now(UTC):
        raise fail(f"--expires {text} is in the past", 2)
    return format_time(moment)


def _tally(envelope: gd.Envelope, root: gd.Root) -> str:
    """Who signed, each partner once and in the order the root lists its keys, of how many."""
    from tearline.clients.governance import documents as gd

    valid = {k.holder for k in gd.signers(envelope, root.keys)}
    names = list(dict.fromkeys(k.holder for k in root.keys if k.holder in valid))
    n, need = len(names), root.threshold
    count = f"{n} of {need} required" if n <= need else f"{n} signed, {need} required"
    return f"signed by {', '.join(names) or 'none'} ({count})"


def _sign(document: Path, key: Path, parser: Callable[[bytes], D]) -> tuple[bytes, D, str]:
    """The document with the key's signature added, parsed again, and the key's holder."""
    from tearline.clients.governance import documents as gd

    data, _ = _document(document, parser)
    me, private = _key(key, private=True)
    signed = gd.add_signature(data, private)
    return signed, parser(signed), me.holder


@governance_app.command()
def keygen(
    holder: Annotated[str, typer.Option(help="The partner holding the key, e.g. GBR.")],
    out: Annotated[Path, typer.Option(help="The private key file, e.g. gbr.governance.json.")],
) -> None:
    """Make a governance key: OUT (private, mode 0600) and OUT's .pub.json (public)."""
    from tearline.clients.governance import documents as gd
    from tearline.clients.protocol.identity import check_partner_id

    with _refusals():
        check_partner_id(holder, "--holder")
    public_out = out.with_name(out.name.removesuffix(".json") + ".pub.json")
    for path in (out, public_out):  # both checked first: never half a key pair
        if path.exists():
            raise fail(f"{path} already exists; refusing to overwrite a key", 2)
    private, public = gd.generate_key()
    entry = {"holder": holder, "public": b64e(public)}
    _create(out, json.dumps({**entry, "private": b64e(private)}, indent=2).encode(), 0o600)
    _create(public_out, json.dumps(entry, indent=2).encode())
    typer.echo(f"wrote {out} (private: keep it on this machine, mode 0600)")
    typer.echo(f"wrote {public_out} (public: for `tearline governance root new --key`)")
    typer.echo(f"holder {holder}, keyid {gd.keyid_of(public)}, public key {b64e(public)}")


@root_app.command("new")
def root_new(
    threshold: Annotated[
        int, typer.Option(min=1, metavar="<n>", help="How many key holders must sign.")
    ],
    key: Annotated[
        list[Path],
        typer.Option(
            "--key",
            metavar="<path>",
            help="A holder's governance key file; only its public part is read. Repeatable.",
        ),
    ],
    expires: ExpiresOption,
    out: OutOption,
    version: Annotated[
        int, typer.Option(min=1, metavar="<n>", help="The root's version; 1 for the first.")
    ] = 1,
) -> None:
    """Write an unsigned root holding the keys' public parts."""
    with _refusals():
        keys = [_key(path, private=False)[0].to_dict() for path in key]
        when = _expires(expires)
        signed = {"type": "root", "version": version, "expires": when, "threshold": threshold}
        _new({**signed, "keys": keys}, out, "root")
    typer.echo(f"wrote {out}: root version {version}, unsigned; {threshold} holder(s) must sign")


@root_app.command("sign")
def root_sign(document: DocArgument, key: KeyOption, out: SignOut = None) -> None:
    """Add your signature to a root (in place unless --out)."""
    from tearline.clients.governance import documents as gd

    with _refusals():
        data, root, holder = _sign(document, key, gd.parse_root)
    written = _write_signed(document, out, data)
    typer.echo(f"signed {written} as {holder}; {_tally(root.envelope, root)}")


@registry_app.command("propose")
def registry_propose(
    out: OutOption,
    from_registry: Annotated[
        Path | None,
        typer.Option(
            "--from-registry",
            help="The registry in force (policies/governance/registry.json): propose its next "
            "version, with its partners and scheme.",
        ),
    ] = None,
    add: Annotated[
        list[Path] | None,
        typer.Option(
            metavar="<path>",
            help="A partner's ID.public.yaml (tearline keygen's) to add, or whose entry to "
            "replace (new keys, a new status). Repeatable.",
        ),
    ] = None,
    partners: Annotated[
        Path | None, typer.Option(help="Or: a partners.yaml, e.g. policies/partners.yaml.")
    ] = None,
    scheme: Annotated[Path | None, typer.Option(help="With --partners: the scheme.yaml.")] = None,
    version: Annotated[
        int | None,
        typer.Option(
            min=1, metavar="<n>", help="Newer than the trusted version (default: the next)."
        ),
    ] = None,
    expires: Annotated[
        str | None,
        typer.Option(help="RFC 3339, like 2027-12-01T00:00:00Z (default: the registry's)."),
    ] = None,
) -> None:
    """Write an unsigned registry version: the next one of --from-registry, or one from the
    policy folder's YAML files (--partners and --scheme); --add puts partners' entries in."""
    from tearline.clients.governance import documents as gd

    if from_registry is not None:
        if partners is not None or scheme is not None:
            raise fail("give --from-registry, or --partners and --scheme, not both", 2)
        with _refusals():
            previous = _document(from_registry, gd.parse_registry)[1]
        entries = [p.to_dict() for p in previous.partners]
        body: dict[str, Any] = {"partners": entries, "scheme": dict(previous.scheme)}
        version = version or previous.version + 1
        expires = expires or format_time(previous.expires)
        source = str(from_registry)
    elif partners is not None and scheme is not None:
        loaded = _yaml(partners)
        if not isinstance(loaded, dict) or set(loaded) != {"partners"}:
            raise fail(f"{partners} must hold one field, partners: a list of partner entries", 2)
        if version is None or expires is None:
            raise fail("with --partners, give --version and --expires", 2)
        body = {"partners": list(loaded["partners"]), "scheme": _yaml(scheme)}
        source = f"{partners} and {scheme}"
    else:
        raise fail("give --from-registry, or --partners and --scheme", 2)
    changed = [_put_entry(body["partners"], path) for path in add or ()]
    with _refusals():
        signed = {"type": "registry", "version": version, "expires": _expires(expires)}
        _new({**signed, **body}, out, source)
    note = "".join(f"; {c}" for c in changed)
    typer.echo(f"wrote {out}: registry version {version}, unsigned{note}")


def _put_entry(entries: list[Any], path: Path) -> str:
    """Put the partner entry at ``path`` in ``entries``: replacing the one of its id, or added."""
    from tearline.clients.protocol.identity import Partner

    entry = _yaml(path)
    if not isinstance(entry, dict) or "id" not in entry:
        raise fail(
            f"{path} does not hold one partner's entry (tearline keygen's ID.public.yaml)", 2
        )
    try:
        Partner.from_dict(entry, str(path))
    except TearlineError as exc:
        raise fail(f"{path}: {exc.message}", 2) from None
    for i, old in enumerate(entries):
        if isinstance(old, dict) and old.get("id") == entry["id"]:
            entries[i] = entry
            return f"replaced {entry['id']}"
    entries.append(entry)
    return f"added {entry['id']}"


@registry_app.command("sign")
def registry_sign(document: DocArgument, key: KeyOption, out: SignOut = None) -> None:
    """Add your signature to a registry version (in place unless --out)."""
    from tearline.clients.governance import documents as gd

    with _refusals():
        data, registry, holder = _sign(document, key, gd.parse_registry)
    written = _write_signed(document, out, data)
    count = len(registry.envelope.signatures)
    typer.echo(f"signed {written} as {holder}; {count} signature(s) so far")


@registry_app.command("verify")
def registry_verify(
    document: DocArgument,
    root: RootOption,
    previous: Annotated[
        Path | None, typer.Option(help="The registry version trusted until now: no rollback.")
    ] = None,
) -> None:
    """Check a registry version as a node would: signed by the root's threshold, not expired,
    and (with --previous) not older than the version trusted before."""
    from tearline.clients.governance import documents as gd
    from tearline.clients.governance.trust import TrustedState

    now = datetime.now(UTC)
    with _refusals():
        state = TrustedState(_root(root), now)
        if previous is not None:
            old_data, old = _document(previous, gd.parse_registry)
            # Judged as a node judged it while it was current: it may have expired since, and
            # that says nothing about whether the new version rolls back.
            with _about(f"--previous {previous}"):
                state.update_registry(old_data, min(now, old.expires - timedelta(microseconds=1)))
        new = state.update_registry(_document(document, gd.parse_registry)[0], now)
    typer.echo(f"ok: version {new.version}, {_tally(new.envelope, state.root)}")


@agreement_app.command("propose")
def agreement_propose(
    agreement: Annotated[Path, typer.Argument(help="e.g. policies/agreements/ID.yaml")],
    out: OutOption,
) -> None:
    """Write an unsigned agreement from its policy YAML; each party then signs it."""
    body = _yaml(agreement)
    with _refusals():
        _new({"type": "agreement", "agreement": body}, out, str(agreement))
    typer.echo(f"wrote {out}: unsigned; each of {', '.join(sorted(body['parties']))} signs it")


@agreement_app.command("sign")
def agreement_sign(document: DocArgument, key: KeyOption, out: SignOut = None) -> None:
    """Add your signature to an agreement you are a party of (in place unless --out)."""
    from tearline.clients.governance import documents as gd

    with _refusals():
        data, signed, holder = _sign(document, key, gd.parse_agreement)
    if holder not in signed.parties:  # a signature the root would never count
        parties = ", ".join(sorted(signed.parties))
        raise fail(f"{holder} is not a party of agreement {signed.id} (parties: {parties})", 2)
    written = _write_signed(document, out, data)
    typer.echo(f"signed {written} as {holder}")


@agreement_app.command("verify")
def agreement_verify(document: DocArgument, root: RootOption) -> None:
    """Check that every party of an agreement signed it with a governance key of the root."""
    from tearline.clients.governance import documents as gd
    from tearline.clients.governance.trust import TrustedState

    now = datetime.now(UTC)
    with _refusals():
        state = TrustedState(_root(root), now)
        state.check_root_not_expired(now)
        signed = state.verify_agreement(_document(document, gd.parse_agreement)[0])
    parties = ", ".join(sorted(signed.parties))
    typer.echo(f"ok: agreement {signed.id}, signed by all its parties: {parties}")


def _status(value: str, agreement_id: str, key: Path, out: Path) -> None:
    from tearline.clients.governance import documents as gd

    with _refusals():
        me, private = _key(key, private=True)
        issued = format_time(datetime.now(UTC).replace(microsecond=0))
        signed = {"type": "agreement-status", "agreement": agreement_id, "status": value}
        data = gd.add_signature(gd.new_document({**signed, "issued": issued}), private)
    _create(out, data)
    typer.echo(f"wrote {out}: agreement {agreement_id} {value}, signed by {me.holder}")


@agreement_app.command("suspend")
def agreement_suspend(agreement_id: AgreementId, key: KeyOption, out: OutOption) -> None:
    """Write a suspension of an agreement, signed by you (any one party may suspend)."""
    _status("suspended", agreement_id, key, out)


@agreement_app.command("terminate")
def agreement_terminate(agreement_id: AgreementId, key: KeyOption, out: OutOption) -> None:
    """Write a termination of an agreement, signed by you (final; any one party may)."""
    _status("terminated", agreement_id, key, out)


# --- putting signed documents in force (an operator, on the broker's policy folder) ------------


def _trusted_folder(policies: Path, now: datetime) -> TrustedState:
    """The trust the folder's roots establish, walked from root-1.json up, as the broker does."""
    from tearline.clients.governance.trust import TrustedState

    folder = policies / "governance"
    roots = sorted(folder.glob("root-*.json"), key=lambda p: int(p.stem.split("-")[1]))
    if not roots:
        raise fail(
            f"{folder} holds no root-1.json: a governed folder starts with the root its key "
            "holders signed (`tearline governance root new`, then `root sign`)",
            2,
        )
    state = TrustedState(_read(roots[0], "root"), now)
    for path in roots[1:]:
        state.update_root(_read(path, "root"), now)
    state.check_root_not_expired(now)
    return state


def _install(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, target)


@registry_app.command("publish")
def registry_publish(document: SignedArgument, policies: PoliciesOption = DEFAULT_POLICIES) -> None:
    """Check a registry version against the folder's roots and its registry (threshold,
    expiry, no rollback), then put it in force: policies/governance/registry.json."""
    from tearline.clients.governance import documents as gd

    now = datetime.now(UTC)
    data = _read(document, "document")
    target = policies / "governance" / "registry.json"
    with _refusals():
        state = _trusted_folder(policies, now)
        if target.exists():
            old_data = _read(target, "the registry in force")
            try:
                old = gd.parse_registry(old_data)
                # As it was judged while current: expired since says nothing about a rollback.
                state.update_registry(old_data, min(now, old.expires - timedelta(microseconds=1)))
            except TearlineError:
                pass  # the one in the folder is broken: the new one replaces it on its own merit
        new = state.update_registry(data, now)
    _install(target, data)
    typer.echo(f"published registry version {new.version} to {target}")


@agreement_app.command("publish")
def agreement_publish(
    document: SignedArgument, policies: PoliciesOption = DEFAULT_POLICIES
) -> None:
    """Check an agreement (every party signed it) or a suspension or termination (a party
    signed it) against the folder's roots, then put it in the folder."""
    from tearline.clients.governance import documents as gd

    now = datetime.now(UTC)
    data = _read(document, "document")
    folder = policies / "governance"
    with _refusals():
        state = _trusted_folder(policies, now)
        kind = gd.parse_envelope(data).doc_type
        if kind == "agreement":
            signed = state.verify_agreement(data)
            target = folder / f"agreement-{signed.id}.json"
            what = f"agreement {signed.id}"
        elif kind == "agreement-status":
            status = gd.parse_status(data)
            agreement = folder / f"agreement-{status.agreement}.json"
            if not agreement.exists():
                raise fail(f"{agreement} is not there: no agreement {status.agreement} to stop", 1)
            state.verify_agreement(_read(agreement, "agreement"))
            state.apply_status(data)
            target = folder / f"status-{status.agreement}.json"
            what = f"{status.status} of {status.agreement}"
        else:
            raise fail(f"{document} is a {kind} document, not an agreement or its status", 2)
    _install(target, data)
    typer.echo(f"published {what} to {target}")
