"""What the ``tearline`` commands say to a person: consoles that do not wrap piped output, the
broker's URL checked before use, network failures and denial reasons in words.

Shared by every command group (:mod:`clients.cli` and the plugins ``broker.cli`` and
``gateway.cli``), so every command words the same failure the same way.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from rich.console import Console

#: Wide enough that no line a command prints is folded when its output goes to a file or a
#: pipe (rich would fold at 80 columns there); a table is as wide as its content.
PIPE_WIDTH: Final = 10_000

#: Where every partner command finds the broker, and how to name another.
BROKER_HINT: Final = "set the URL with --broker or TEARLINE_BROKER"


def console(*, stderr: bool = False, quiet: bool = False) -> Console:
    """A console for a command's output: the terminal's width on a terminal; unwrapped when
    piped (unless ``COLUMNS`` asks for a width)."""
    from rich.console import Console  # here: `tearline --help` and the SDK need no rich

    out = Console(stderr=stderr, quiet=quiet)
    if out.is_terminal or "COLUMNS" in os.environ:
        return out
    return Console(stderr=stderr, quiet=quiet, width=PIPE_WIDTH, soft_wrap=True)


def broker_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a broker's base URL, with the fix; None when it can."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        bare = url.strip().removeprefix("//")
        if "://" in bare:  # another scheme: name it
            return (
                f"broker URL {url!r}: the scheme must be http or https, "
                f"like http://127.0.0.1:8000; {BROKER_HINT}"
            )
        return (
            f"broker URL {url!r} has no scheme: write http://{bare} "
            f"(or https://{bare}); {BROKER_HINT}"
        )
    if parts.query or parts.fragment:
        return f"broker URL {url!r}: give only the base URL, like http://127.0.0.1:8000"
    return None


def network_reason(exc: BaseException) -> str:
    """What went wrong on the network, in words, from an error whose cause chain holds the
    httpx or OS error ("connection refused" rather than "All connection attempts failed")."""
    import socket  # here, as httpx: only a command that failed on the network needs them

    import httpx  # here: the commands that name no broker need no HTTP stack

    seen: set[int] = set()
    current: BaseException | None = exc
    fallback = ""
    while current is not None and id(current) not in seen and len(seen) < 20:
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return "connection refused (nothing listens on that port)"
        if isinstance(current, socket.gaierror):
            return f"host name not found ({current.strerror or current})"
        if isinstance(current, httpx.TimeoutException | TimeoutError):
            return "timed out"
        if isinstance(current, ConnectionResetError):
            return "the connection was reset"
        if isinstance(current, OSError) and current.strerror and not fallback:
            fallback = current.strerror
        elif isinstance(current, httpx.HTTPError) and str(current) and not fallback:
            fallback = str(current)
        current = current.__cause__ or current.__context__
    return fallback or type(exc).__name__


def unreachable(url: str, exc: BaseException) -> str:
    """The sentence for a broker that did not answer at ``url``."""
    return (
        f"cannot reach the broker at {url}: {network_reason(exc)}. "
        f"Is `tearline serve` running there? {BROKER_HINT[0].upper()}{BROKER_HINT[1:]}."
    )


#: Each reason code of the releasability engine (DESIGN §4), as a sentence about partner P,
#: originator O, with the label's classification C and the suite S; and the CLI's own two.
REASONS: Final[dict[str, str]] = {
    "ORIGINATOR": "{p} sent it",
    "EXPIRED": "the label has expired",
    "RECALLED": "the report was recalled",
    "PARTNER_SUSPENDED": "{p} is suspended",
    "NO_ENCRYPTION_KEY": "{p} has no valid encryption key for suite {s}",
    "NOT_RELEASABLE_TO": "{p} is not named in REL TO",
    "NO_AGREEMENT": "{o} and {p} share no agreement",
    "AGREEMENT_NOT_IN_FORCE": "the agreement between {o} and {p} is not in force",
    "CLASSIFICATION_ABOVE_CEILING": "{c} is above the ceiling of the agreement with {p}",
    "CLASSIFICATION_ABOVE_CLEARANCE": "{c} is above {p}'s clearance under the agreement",
    "TOPIC_OUT_OF_SCOPE": "a topic of the label is outside the agreement with {p}",
    "CAVEAT_NOT_ACCREDITED": "{p} is not accredited for a caveat of the label",
    "SUITE_TOO_WEAK": "the agreement with {p} needs --suite pq-hybrid at {c}",
    "UNKNOWN_PARTNER": "the broker knows no partner {p}",
    "EXCLUDED_BY_ONLY": "left out by --only",
}


def reason_text(
    code: str, *, partner: str, originator: str, classification: str, suite: str
) -> str:
    """``code`` as a sentence (the code itself when it is one this version does not know)."""
    template = REASONS.get(code)
    if template is None:
        return code
    return template.format(p=partner, o=originator, c=classification, s=suite)
