"""Every Redis key the broker uses, and what lives there (DESIGN §7). Nothing else names a key.

A part in ``{…}`` is a hash tag: Redis Cluster places a key by it alone. All keys of one report
share its id's tag (``tl:report:{id}``, ``tl:audit:report:{id}``), all keys of one partner its
code's (``tl:inbox:{P}``, ``tl:dead:{P}``, ``tl:quota:{P}``). The audit stream, the audit index's
cursor and checkpoints, the transparency log, nonces and leases carry no tag.

These names are the data on disk: renaming one leaves what is stored under the old name unread.
"""

from __future__ import annotations

from typing import Final

# The consumer group of every inbox stream: the broker's, whichever process reads.
GROUP: Final = b"tl"


def report_key(report_id: str) -> str:
    """Hash, one per accepted report, expiring after the retention window: ``envelope`` (its
    bytes), ``digest`` (the idempotency record: a repost of other bytes is a conflict),
    ``originator``, ``accepted_ms``, ``label``, ``suite``, ``grants``, ``positions`` (its entry
    id in each inbox), ``recipients``; after a recall, ``recalled`` and ``recall`` (who lost
    their copy; who was notified)."""
    return f"tl:report:{{{report_id}}}"


def inbox_key(partner: str) -> str:
    """Stream, one per recipient, consumer group :data:`GROUP`: one entry per report for the
    partner (``report``, ``originator``, ``bytes``), or a notice (``kind``: ``recall``; ``gap``
    with ``lost`` and ``before``, what retention dropped unacknowledged)."""
    return f"tl:inbox:{{{partner}}}"


def dead_key(partner: str) -> str:
    """Stream: the partner's inbox entries set aside, delivered more than ``max_deliveries``
    times or not deliverable (the entry's fields, ``entry`` and ``reason``), until an operator
    replays them."""
    return f"tl:dead:{{{partner}}}"


def quota_key(partner: str) -> str:
    """Hash: what counts against the partner's storage quotas. As a recipient,
    ``queued_reports`` and ``queued_bytes`` (its inbox entries not yet acknowledged); as an
    originator, ``stored_reports`` and ``stored_bytes`` (its reports within the retention
    window), kept per hour of acceptance in ``r:<hour>`` and ``b:<hour>``, from ``first_hour``
    to ``last_hour`` (see the package's docstring)."""
    return f"tl:quota:{{{partner}}}"


def nonce_key(partner: str, nonce: str) -> str:
    """String ``1``, expiring after the replay window: a request nonce seen from the partner.
    Per partner, so one partner cannot burn another's nonces. No hash tag."""
    return f"tl:nonce:{partner}:{nonce}"


# The ingest script's nonce key when the request's nonce was checked already: never written.
NO_NONCE_KEY: Final = "tl:nonce:-"

# Stream: the audit trail, one entry per event (``event``, ``report``, ``data``): accepted,
# received, withheld, recalled, dead_lettered, replayed, gap; checkpointed by broker.audit.
AUDIT_KEY: Final = "tl:audit"
# Stream: the audit trail's signed checkpoints (broker.audit), the newest last.
CHECKPOINTS_KEY: Final = "tl:audit:checkpoints"
# String: the id of the last audit entry the per-report lists (audit_index_key) cover.
AUDIT_INDEXED_KEY: Final = "tl:audit:indexed"


def audit_index_key(report_id: str) -> str:
    """List: the ids of the audit entries about the report, oldest first, derived from
    :data:`AUDIT_KEY` up to :data:`AUDIT_INDEXED_KEY`."""
    return f"tl:audit:report:{{{report_id}}}"


# List: the transparency log's leaves, the governance documents' bytes (broker.translog).
LOG_KEY: Final = "tl:log"
# Hash: SHA-256 hex of a document → its index in LOG_KEY, so each is appended once.
LOG_INDEX_KEY: Final = "tl:log:index"


def lease_key(task: str) -> str:
    """String, expiring: the broker process that runs the periodic ``task`` now (its holder
    id); it lapses if the holder dies. No hash tag."""
    return f"tl:lease:{task}"
