"""The store's Lua scripts, read once from the package's ``scripts/*.lua`` (package data).

Each script runs atomically in Redis: what it changes is changed all together or not at all.
A script's text is its pieces joined, each after a newline, so that it is the very text (and
SHA-1, which Redis caches scripts by) it was when the scripts were Python strings: brokers of
either release share one script cache.

``release.lua`` is no script of its own: it defines ``release(inbox, quota, id)``, put before
each script that takes an entry out of an inbox's queue (recall, dead letter, withhold), so the
entry's envelope no longer counts against the recipient's quota. Entries without ``bytes``
(written before quotas were counted) were never added, so are never taken away.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Final

_FOLDER: Final = files("tearline.broker.store") / "scripts"


def _script(*pieces: str) -> str:
    return "".join("\n" + (_FOLDER / piece).read_text(encoding="utf-8") for piece in pieces)


INGEST: Final = _script("ingest.lua")
ACK: Final = _script("ack.lua")
WITHHOLD: Final = _script("release.lua", "withhold.lua")
RECALL: Final = _script("release.lua", "recall.lua")
DEAD_LETTER: Final = _script("release.lua", "dead_letter.lua")
REPLAY: Final = _script("replay.lua")
TRIM: Final = _script("trim.lua")
AUDIT_INDEX: Final = _script("audit_index.lua")
LOG_APPEND: Final = _script("log_append.lua")

# Every script by name, as the package docstring lists them (a test holds the two together).
SCRIPTS: Final = {
    "ingest": INGEST,
    "ack": ACK,
    "withhold": WITHHOLD,
    "recall": RECALL,
    "dead_letter": DEAD_LETTER,
    "replay": REPLAY,
    "trim": TRIM,
    "audit_index": AUDIT_INDEX,
    "log_append": LOG_APPEND,
}
