"""Partnership agreements (§4): who shares with whom, up to which level, on which topics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tearline.clients.protocol.encoding import format_time, parse_time


@dataclass(frozen=True, slots=True)
class Party:
    """One party's terms under an agreement; ``clearance`` None means the agreement's ceiling."""

    clearance: str | None = None
    caveats: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Agreement:
    id: str
    title: str
    valid_from: datetime
    valid_until: datetime
    ceiling: str
    topics: frozenset[str] | None  # None: every topic (["*"] in the file)
    parties: Mapping[str, Party]
    require_pq_from: str | None = None
    suspended: bool = False

    def in_force(self, now: datetime) -> bool:
        return not self.suspended and self.valid_from <= now < self.valid_until

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Agreement:
        """Build from a document that already passed the agreement JSON schema."""
        topics = obj["topics"]
        parties = {
            pid: Party(
                clearance=(terms or {}).get("clearance"),
                caveats=frozenset((terms or {}).get("caveats", ())),
            )
            for pid, terms in obj["parties"].items()
        }
        return cls(
            id=obj["id"],
            title=obj["title"],
            valid_from=parse_time(obj["valid_from"]),
            valid_until=parse_time(obj["valid_until"]),
            ceiling=obj["ceiling"],
            topics=None if topics == ["*"] else frozenset(topics),
            parties=parties,
            require_pq_from=obj.get("require_pq_from"),
            suspended=bool(obj.get("suspended", False)),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "valid_from": format_time(self.valid_from),
            "valid_until": format_time(self.valid_until),
            "ceiling": self.ceiling,
            "topics": ["*"] if self.topics is None else sorted(self.topics),
            "parties": {
                pid: {
                    **({"clearance": p.clearance} if p.clearance else {}),
                    **({"caveats": sorted(p.caveats)} if p.caveats else {}),
                }
                for pid, p in sorted(self.parties.items())
            },
            "suspended": self.suspended,
        }
        if self.require_pq_from:
            out["require_pq_from"] = self.require_pq_from
        return out
