"""What the broker reads of ``policies/``, and the fingerprint of it. Pure: names and bytes in.

The folder holds these files, and the broker reads every one of them::

    scheme.yaml  partners.yaml  operators.yaml (optional)  agreements/<id>.yaml

or, in a governed folder (docs/protocol.md §11), where the partners, the scheme and the
agreements are documents signed by the partners themselves::

    operators.yaml (optional)  governance/root-<N>.json  governance/registry.json
    governance/agreement-<id>.json  governance/status-<id>.json

Anything else in it is refused, so a file the operator believes is in force but the broker never
reads (``agreements/x.yml``, ``partners.yml``, a folder of old agreements, ``x.yaml.off``) is an
error to fix, not a silent no-op. Names starting with ``.`` or ``#`` or ending in ``~`` are
ignored: that is what editors (vim's ``.x.swp``, emacs' ``x~``, ``#x#`` and ``.#x``), rsync
(``.x.AbC123`` while it copies) and Kubernetes (``..data``) leave behind, and nobody means them
as policy; hiding a file that way takes it out of force like deleting it.

The fingerprint is the set of files read and the SHA-256 of each one's bytes (and, for a folder
that is refused, every entry that was not read and why). A reload is triggered by a change of
fingerprint, never by timestamps: a file deleted, renamed, restored from a backup with an old
mtime, or rewritten to the same size is noticed all the same.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import PurePosixPath
from typing import Any, Final

MiB: Final = 1024 * 1024
#: A policy file over this is refused unread. partners.yaml with a few hundred pq-hybrid
#: partners (about 5 KiB of keys each) is a megabyte or two.
MAX_FILE_BYTES: Final = 8 * MiB
#: Every policy file together: bounds what one watcher round reads and hashes.
MAX_FOLDER_BYTES: Final = 32 * MiB
#: Entries listed per folder (the policy folder, ``agreements/``), ignored names included.
MAX_DIR_ENTRIES: Final = 4096

SCHEME: Final = "scheme.yaml"
PARTNERS: Final = "partners.yaml"
OPERATORS: Final = "operators.yaml"
AGREEMENTS: Final = "agreements"
SUFFIX: Final = ".yaml"
GOVERNANCE: Final = "governance"
#: What ``governance/`` holds: every root version (the chain a node walks from the one it
#: pinned), the registry in force, agreements and their suspensions or terminations.
GOVERNANCE_FILE: Final = re.compile(
    r"(root-[1-9][0-9]{0,15}|registry|agreement-[a-z0-9][a-z0-9-]{0,63}"
    r"|status-[a-z0-9][a-z0-9-]{0,63})\.json",
    re.ASCII,
)
TOP_FILES: Final = (SCHEME, PARTNERS, OPERATORS)
ALLOWED: Final = (
    "the policy folder holds only scheme.yaml, partners.yaml, operators.yaml and "
    "agreements/<id>.yaml, or, governed, operators.yaml and governance/ (root-<N>.json, "
    "registry.json, agreement-<id>.json, status-<id>.json); names starting with '.' or '#', "
    "or ending in '~', are ignored"
)


class Action(Enum):
    """What the reader does with one entry of the folder."""

    READ = "read"  # a policy file
    DESCEND = "descend"  # the agreements folder, the governance folder
    IGNORE = "ignore"  # an editor's, rsync's or Kubernetes' dropping
    REFUSE = "refuse"  # anything else: the folder is refused until it is moved out


def ignored(name: str) -> bool:
    return name.startswith((".", "#")) or name.endswith("~")


def classify(rel: str, *, is_dir: bool) -> Action:
    """The action for the entry at ``rel`` (``partners.yaml``, ``agreements/x.yaml``)."""
    parts = rel.split("/")
    if ignored(parts[-1]):
        return Action.IGNORE
    if len(parts) == 1:
        if rel in TOP_FILES and not is_dir:
            return Action.READ
        if rel in (AGREEMENTS, GOVERNANCE) and is_dir:
            return Action.DESCEND
        return Action.REFUSE
    if len(parts) == 2 and parts[0] == AGREEMENTS and rel.endswith(SUFFIX) and not is_dir:
        return Action.READ
    if len(parts) == 2 and parts[0] == GOVERNANCE and not is_dir:
        return Action.READ if GOVERNANCE_FILE.fullmatch(parts[1]) else Action.REFUSE
    return Action.REFUSE


def refusal(rel: str, *, is_dir: bool) -> str:
    """Why the entry at ``rel`` is refused, with a hint at what was probably meant."""
    path = PurePosixPath(rel)
    in_agreements = len(path.parts) == 2 and path.parts[0] == AGREEMENTS
    if len(path.parts) == 2 and path.parts[0] == GOVERNANCE and not is_dir:
        return (
            "not read by the broker: governance/ holds root-<N>.json, registry.json, "
            "agreement-<id>.json and status-<id>.json, as `tearline registry publish` and "
            f"`tearline agreement publish` write them; {ALLOWED}"
        )
    stem, suffix = path.stem, path.suffix.lower()
    if rel in TOP_FILES and is_dir:
        hint = "a folder where a file belongs"
    elif rel == AGREEMENTS and not is_dir:
        hint = "a file where the folder of agreements belongs"
    elif in_agreements and not is_dir and suffix in (".yml", SUFFIX):
        hint = f"not read by the broker: agreements end in .yaml, rename it agreements/{stem}.yaml"
    elif len(path.parts) == 1 and not is_dir and f"{stem.lower()}{SUFFIX}" in TOP_FILES:
        hint = f"not read by the broker: did you mean {stem.lower()}{SUFFIX}?"
    elif len(path.parts) == 1 and not is_dir and suffix in (".yml", SUFFIX):
        hint = "not read by the broker: agreements go in agreements/"
    elif in_agreements and not is_dir and re.search(r"\.ya?ml\.", path.name, re.IGNORECASE):
        # x.yaml.off, x.yaml.bak: a file switched off by renaming still sits in the folder.
        hint = "not read by the broker: to end an agreement, move its file out of the folder"
    elif is_dir:
        hint = "a folder the broker does not read: move it out of the policy folder"
    else:
        hint = "not read by the broker: move it out of the policy folder"
    return f"{hint}; {ALLOWED}"


@dataclass(frozen=True, slots=True)
class PolicyFiles:
    """The policy folder as read at one moment.

    ``contents``: each policy file's bytes, by path relative to the folder. ``unread``: every
    entry that is refused or could not be read, with why. ``listed`` is False when the folder
    itself could not be listed; then ``unread`` says why and nothing else is known.
    """

    contents: Mapping[str, bytes]
    unread: Mapping[str, str] = field(default_factory=dict)
    listed: bool = True


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What a policy folder holds: ``(path, SHA-256 hex of its bytes)`` for each file read, and
    ``(path, why)`` for each entry that was not; both sorted by path. Equal fingerprints mean
    the broker would load the same policy."""

    files: tuple[tuple[str, str], ...]
    unread: tuple[tuple[str, str], ...] = ()

    @property
    def digest(self) -> str:
        """One SHA-256 (hex) for the whole folder. For a folder that loads, it is the SHA-256 of
        ``sha256sum``'s output for its files (``<hex>  <path>`` lines, sorted by path)."""
        lines = [f"{sha}  {path}\n" for path, sha in self.files]
        lines += [f"!{why}  {path}\n" for path, why in self.unread]
        return hashlib.sha256("".join(lines).encode()).hexdigest()

    @property
    def short(self) -> str:
        """The digest's first 12 hex digits, for log lines."""
        return self.digest[:12]

    def states(self) -> dict[str, str]:
        """Each path's state: its SHA-256, or ``!why`` when it was not read."""
        return {**dict(self.files), **{path: f"!{why}" for path, why in self.unread}}


def fingerprint(files: PolicyFiles) -> Fingerprint:
    return Fingerprint(
        files=tuple(sorted((p, hashlib.sha256(b).hexdigest()) for p, b in files.contents.items())),
        unread=tuple(sorted(files.unread.items())),
    )


#: How many paths (or problems) one log line names before it says how many more there are.
LISTED_IN_A_LINE: Final = 10


def bounded_list(items: tuple[str, ...] | list[str], sep: str = ", ") -> str:
    shown = sep.join(items[:LISTED_IN_A_LINE])
    more = len(items) - LISTED_IN_A_LINE
    return f"{shown}{sep}and {more} more" if more > 0 else shown


@dataclass(frozen=True, slots=True)
class Changes:
    """What differs between two fingerprints, by path. A file whose bytes reappear under
    another path is a rename."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    renamed: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed or self.renamed)

    def __str__(self) -> str:
        """One line for the log, bounded however many files changed."""
        parts = [f"renamed {old} to {new}" for old, new in self.renamed[:LISTED_IN_A_LINE]]
        if len(self.renamed) > LISTED_IN_A_LINE:
            parts.append(f"{len(self.renamed) - LISTED_IN_A_LINE} more renamed")
        for verb, paths in (
            ("added", self.added),
            ("removed", self.removed),
            ("changed", self.changed),
        ):
            if paths:
                parts.append(f"{verb} {bounded_list(paths)}")
        return "; ".join(parts) or "no file changed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": list(self.changed),
            "renamed": [{"from": old, "to": new} for old, new in self.renamed],
        }


def changes(old: Fingerprint | None, new: Fingerprint) -> Changes:
    """How ``new`` differs from ``old`` (None: nothing known before, so everything is added)."""
    before = old.states() if old is not None else {}
    after = new.states()
    added = sorted(after.keys() - before.keys())
    removed = sorted(before.keys() - after.keys())
    changed = sorted(p for p in after.keys() & before.keys() if after[p] != before[p])
    renamed: list[tuple[str, str]] = []
    for gone in list(removed):
        state = before[gone]
        if state.startswith("!"):  # an entry that was never read has no content to follow
            continue
        twin = next((p for p in added if after[p] == state), None)
        if twin is not None:
            renamed.append((gone, twin))
            removed.remove(gone)
            added.remove(twin)
    return Changes(tuple(added), tuple(removed), tuple(changed), tuple(renamed))
