"""``tearline partner add``: a partner's ``ID.public.yaml`` into ``partners.yaml``, no hand edits.

The new folder is checked exactly as ``tearline policy check`` checks it before anything is
written; then ``partners.yaml`` is replaced in one rename (a temporary file beside it whose
name starts with ``.``, which the broker's reader ignores), so a broker reloading by content
reads the old file or the new one, never half of one. The text is edited, not re-serialised:
comments and layout stay as they were, the entry is appended to the list (or put in place of the
one it replaces), and the result is checked to parse to exactly the registry intended.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from tearline.broker.policy.check import Problem, check_files
from tearline.broker.policy.fingerprint import PARTNERS, PolicyFiles, fingerprint
from tearline.broker.policy.folder import read_policy_folder
from tearline.broker.policy.governed import is_governed
from tearline.broker.policy.yamlfile import load_yaml
from tearline.clients.errors import IdentityError, InputError, PolicyError
from tearline.clients.protocol.identity import Partner

HOW = "give the ID.public.yaml that `tearline keygen` wrote for the partner"


class PartnerFileError(InputError):
    """Why the partner was not added; ``problems`` lists what ``policy check`` would say."""

    code = "partner_not_added"

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message, details=[str(p) for p in problems or ()])
        self.problems = list(problems or ())


@dataclass(frozen=True)
class Added:
    partner: str
    replaced: bool
    path: Path
    partners: int
    fingerprint: str
    agreements: list[str] = field(default_factory=list)  # the partner's, by id


def read_entry(path: Path) -> dict[str, Any]:
    """The one registry entry in ``path``; PartnerFileError saying what the file is instead."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise PartnerFileError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise PartnerFileError(f"{path} is not UTF-8 text; {HOW}") from None
    try:
        data, _ = load_yaml(text, str(path))
    except PolicyError as exc:
        raise PartnerFileError(f"{exc.message}; {HOW}") from None
    if not isinstance(data, dict):
        raise PartnerFileError(f"{path} does not hold one partner's entry (a mapping); {HOW}")
    if "partners" in data or "operators" in data:
        raise PartnerFileError(f"{path} is a whole registry, not one partner's entry; {HOW}")
    keys = data.get("keys")
    if "partner" in data or (
        isinstance(keys, list) and any(isinstance(k, dict) and "private" in k for k in keys)
    ):
        raise PartnerFileError(
            f"{path} holds private keys (an identity file): it must never leave the partner's "
            f"node; {HOW} beside it"
        )
    if not isinstance(data.get("id"), str):
        raise PartnerFileError(f"{path} has no partner id (field id); {HOW}")
    try:
        Partner.from_dict(data)
    except IdentityError as exc:
        raise PartnerFileError(f"{path} is not a valid partner entry: {exc.message}") from None
    return data


def add_partner(policies: Path, entry: dict[str, Any], *, replace: bool = False) -> Added:
    """Add ``entry`` to ``policies/partners.yaml`` (or, with ``replace``, put it in place of the
    entry with its id), if the folder stays valid; PartnerFileError otherwise."""
    files = read_policy_folder(policies)
    if not files.listed:
        why = "; ".join(files.unread.values())
        raise PartnerFileError(f"--policies {policies}: {why}")
    if is_governed(files.contents):
        raise PartnerFileError(
            f"{policies} is governed: its partners come from governance/registry.json, signed by "
            "the root's key holders, never from an operator's edit. Propose the next version "
            "(`tearline registry propose`), have it signed (`tearline registry sign`), then "
            f"`tearline registry publish FILE --policies {policies}`"
        )
    now = datetime.now(UTC)  # one reading for both checks
    before, problems = check_files(files, now=now)
    if before is None:
        raise PartnerFileError(
            f"{policies} does not pass `tearline policy check` as it is; fix it first", problems
        )
    raw = files.contents[PARTNERS]
    text = raw.decode("utf-8")
    current, _ = load_yaml(text, PARTNERS)
    entries: list[Any] = list(current["partners"])
    pid = entry["id"]
    index = next((i for i, e in enumerate(entries) if e.get("id") == pid), None)
    target = policies / PARTNERS
    if index is not None and not replace:
        raise PartnerFileError(
            f"{pid} is already a partner in {target}; pass --replace to update its entry"
        )
    if index is None and replace:
        raise PartnerFileError(f"{pid} is not in {target}; leave out --replace to add it")
    if pid in before.operators:
        raise PartnerFileError(
            f"{pid} is an operator's id in {policies}/operators.yaml; partners and operators "
            "share one set of ids"
        )
    wanted = list(entries)
    if index is None:
        wanted.append(entry)
    else:
        wanted[index] = entry
    new_text = _edited(text, wanted, index, entry)
    after_files = PolicyFiles(
        {**files.contents, PARTNERS: new_text.encode("utf-8")}, files.unread, files.listed
    )
    after, problems = check_files(after_files, now=now)
    if after is None:
        raise PartnerFileError(
            f"{pid} not added: {policies} would not pass `tearline policy check`", problems
        )
    _replace_atomically(target, raw, new_text.encode("utf-8"))
    return Added(
        partner=pid,
        replaced=index is not None,
        path=target,
        partners=len(after.registry),
        fingerprint=fingerprint(after_files).digest,
        agreements=[a.id for a in after.agreements_of(pid)],
    )


def _edited(text: str, wanted: list[Any], index: int | None, entry: dict[str, Any]) -> str:
    """``text`` with ``entry`` appended as the last list item (``index`` None) or in place of
    item ``index``, keeping every other line; the whole list re-written (with the comments at
    the top kept) when the file's layout does not allow that."""
    spliced = _splice(text, index, entry)
    if spliced is not None and _partners_of(spliced) == wanted:
        return spliced
    header = "".join(
        line for line in _leading_comments(text.splitlines(keepends=True)) if line.strip()
    )
    body = yaml.safe_dump({"partners": wanted}, sort_keys=False, width=1 << 16)
    return header + body


def _partners_of(text: str) -> Any:
    try:
        data, _ = load_yaml(text, PARTNERS)
    except PolicyError:
        return None
    return data.get("partners") if isinstance(data, dict) else None


def _leading_comments(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        if line.strip() and not line.lstrip().startswith("#"):
            break
        out.append(line)
    return out


def _splice(text: str, index: int | None, entry: dict[str, Any]) -> str | None:
    """The text edit, or None where the layout is not a plain block list under ``partners:``
    as the last key of the file (the form keygen, init and this command write)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if not isinstance(root, yaml.MappingNode) or not root.value:
        return None
    key, seq = root.value[-1]
    if key.value != "partners" or not isinstance(seq, yaml.SequenceNode) or not seq.value:
        return None
    if seq.flow_style:
        return None
    lines = text.splitlines(keepends=True)
    first = seq.value[0].start_mark
    prefix = lines[first.line][: first.column]
    dash = prefix.rfind("-")
    if dash < 0 or prefix[:dash].strip() or prefix[dash + 1 :].strip():
        return None
    item = _as_item(entry, dash, first.column)
    if index is None:
        end = _last_content_line(lines, len(lines) - 1) + 1
        before = "".join(lines[:end])
        if before and not before.endswith("\n"):
            before += "\n"
        return before + item + "".join(lines[end:])
    start = seq.value[index].start_mark.line
    nxt = seq.value[index + 1].start_mark.line if index + 1 < len(seq.value) else len(lines)
    end = _last_content_line(lines, nxt - 1) + 1
    if end <= start:
        return None
    return "".join(lines[:start]) + item + "".join(lines[end:])


def _as_item(entry: dict[str, Any], dash: int, column: int) -> str:
    dumped = yaml.safe_dump(entry, sort_keys=False, width=1 << 16).splitlines()
    first = " " * dash + "-" + " " * (column - dash - 1) + dumped[0]
    rest = [" " * column + line for line in dumped[1:]]
    return "\n".join([first, *rest]) + "\n"


def _last_content_line(lines: list[str], last: int) -> int:
    """The last line at or before ``last`` that is neither blank nor only a comment."""
    while last >= 0 and (not lines[last].strip() or lines[last].lstrip().startswith("#")):
        last -= 1
    return last


def _replace_atomically(target: Path, expected: bytes, data: bytes) -> None:
    """Write ``data`` over ``target`` by one rename, keeping its mode; refuse if someone else
    changed ``target`` since it was read (their edit would be lost)."""
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    mode = stat.S_IMODE(target.stat().st_mode)
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if target.read_bytes() != expected:
            raise PartnerFileError(
                f"{target} changed while the entry was being added; nothing was written, "
                "run the command again"
            )
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    with contextlib.suppress(OSError):  # the rename itself survives a crash
        dirfd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
