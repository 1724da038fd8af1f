"""What the broker remembers of its policy folder's reloads: the policy in force, the last
reload refused, and the outcome of each round. Data only, so the broker's state can hold it
without depending on the reloading (:mod:`tearline.broker.reload`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from tearline.broker.policy.fingerprint import Changes, Fingerprint


class Outcome(StrEnum):
    UNCHANGED = "unchanged"  # the folder holds the policy in force, or the reload last refused
    APPLIED = "applied"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Refusal:
    """A reload that was refused: what the folder held, when, what had changed, and why."""

    fingerprint: Fingerprint
    at: datetime
    changes: Changes
    problems: tuple[str, ...]

    @property
    def message(self) -> str:
        return "; ".join(self.problems)


@dataclass
class PolicyReloads:
    """What the broker knows of its policy folder: the fingerprint of the policy in force and
    when it was loaded (None when not known: the next round loads whatever is there), the last
    reload refused, and whether the folder still holds what was refused."""

    fingerprint: Fingerprint | None = None
    loaded_at: datetime | None = None
    refused: Refusal | None = None
    outstanding: bool = False
    # The expiry of the governed documents in force, once the operator has been told of it.
    expiry_told: datetime | None = None
    # One reload at a time: a slow round finishing after a newer one must not undo it.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False, compare=False)

    @property
    def error(self) -> str | None:
        """The refused reload's problems while the folder still holds it."""
        return self.refused.message if self.outstanding and self.refused else None

    def needs_load(self, folder: Fingerprint) -> bool:
        """Whether a folder with this fingerprint must be loaded: it is neither the policy in
        force nor the folder last refused (loading is deterministic in the bytes, so refusing
        the same bytes again would only repeat the log line)."""
        if folder == self.fingerprint:
            return False
        return not (self.outstanding and self.refused and folder == self.refused.fingerprint)

    def applied(self, folder: Fingerprint, at: datetime) -> None:
        self.fingerprint, self.loaded_at, self.outstanding = folder, at, False

    def refuse(self, refusal: Refusal) -> None:
        self.refused, self.outstanding = refusal, True
