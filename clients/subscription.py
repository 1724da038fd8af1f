"""What one ``AsyncPartner.subscribe()`` keeps across its connections: why a connection was
lost and whether that is worth retrying, the backoff, where to resume, which reports were
already handed to the application, and the log lines of an outage (one when it begins, one when
it ends)."""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from typing import Final

import httpx
from httpx_sse import ServerSentEvent

from tearline.clients.backoff import Backoff
from tearline.clients.errors import InternalError, RateLimitedError, TearlineError, TransportError
from tearline.clients.http import error_of

log = logging.getLogger("tearline.client")

#: How many report ids a subscription remembers to drop redeliveries: far more than can be in
#: flight, bounded for a node that runs for months.
SEEN_MAX: Final = 10_000


class StreamLost(TransportError):
    """The inbox stream could not be opened or ended, for a reason a later attempt may not
    meet. Internal to :meth:`AsyncPartner.subscribe`, which reconnects on it."""

    code = "stream_lost"

    def __init__(
        self, reason: str, *, at_least_s: float = 0.0, ended_by_broker: bool = False
    ) -> None:
        super().__init__(reason)
        #: The broker's own minimum delay before the next attempt, in seconds.
        self.at_least_s = at_least_s
        #: The broker ended the stream cleanly, with no error: routine, unless it stays away.
        self.ended_by_broker = ended_by_broker

    @classmethod
    def of(cls, exc: TearlineError) -> StreamLost:
        """A retryable error met while handling the stream (fetching the directory, acking a
        duplicate), e.g. the broker went away between two events."""
        return cls(f"{exc.message} ({exc.code})", at_least_s=float(exc.retry_after_s or 0))

    @classmethod
    def from_event(cls, event: ServerSentEvent) -> StreamLost:
        """The broker's ``error`` event, sent just before it ends a stream whose store failed:
        ``data`` is the usual error body, ``retry:`` the least delay in milliseconds."""
        try:
            error = json.loads(event.data)["error"]
            what = f"{error['message']} ({error['code']})"
        except (ValueError, KeyError, TypeError):
            what = "no details given"
        return cls(
            f"the broker ended the stream with an error: {what}",
            at_least_s=(event.retry or 0) / 1000,
        )


def worth_retrying(exc: TearlineError) -> bool:
    """Whether a later attempt may succeed: the network or the broker (or its store) was away,
    or it was busy or failed (429, 5xx). A signature it refuses (401), a policy refusal (403)
    or a request it cannot accept (other 4xx) will be refused again."""
    return isinstance(exc, TransportError | RateLimitedError | InternalError)


def stream_refusal(response: httpx.Response) -> TearlineError:
    """What a non-2xx answer to the stream request means: retry (429, 5xx), or the error."""
    error = error_of(response)
    if response.status_code == 429 or response.status_code >= 500:
        return StreamLost(
            f"the broker answered {response.status_code}: {error.message} ({error.code})",
            at_least_s=float(error.retry_after_s or 0),
        )
    return error


def describe_http(exc: Exception) -> str:
    # httpx's messages are sometimes empty (a peer that closed the connection): name the type.
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Subscription:
    """What one ``subscribe()`` keeps across its connections: where to resume, which reports it
    has yielded, and the state of the current interruption — for the backoff, and to log an
    outage once when it begins and once when it ends."""

    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self.last_event_id: str | None = None
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._ever_opened = False
        # The connection now open: since when (monotonic), and whether it carried an event.
        self._opened_at: float | None = None
        self._carried = False
        # The current interruption: since when, why it began, whether it was logged as an
        # outage, and how many reconnection attempts it has cost so far.
        self._down_since: float | None = None
        self._first_reason = ""
        self._announced = False
        self._attempts = 0

    def first_time(self, kind: str, report_id: str) -> bool:
        key = (kind, report_id)
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > SEEN_MAX:
            self._seen.popitem(last=False)
        return True

    def opened(self) -> None:
        """The broker accepted a connection: the interruption, if any, is over."""
        now = time.monotonic()
        if self._down_since is not None and self._announced:
            log.info(
                "inbox stream %s after %d attempt(s), %.1f s",
                "back" if self._ever_opened else "open",
                self._attempts,
                now - self._down_since,
            )
        self._ever_opened = True
        self._opened_at, self._carried = now, False
        self._down_since, self._announced, self._attempts = None, False, 0

    def delivered(self) -> None:
        """The connection carried an event."""
        self._carried = True

    def delay_after(self, lost: StreamLost) -> float:
        """Seconds to wait before the next attempt; logs the outage when it begins."""
        now = time.monotonic()
        if self._worked(now):
            self.backoff.reset()  # the next outage starts again from the base delay
            worked = True
        else:
            worked = False
        self._opened_at = None
        if self._down_since is None:
            self._down_since, self._first_reason, self._attempts = now, lost.message, 0
            if lost.ended_by_broker and worked:
                # Brokers end streams on their own (a stream's lifetime, a graceful restart
                # behind a balancer): not an outage unless reconnecting fails.
                log.debug("the broker ended the inbox stream; reconnecting")
            else:
                self._announce(lost.message)
        elif not self._announced:
            self._announce(f"{self._first_reason}, then {lost.message}")
        else:
            log.debug("reconnection attempt %d failed: %s", self._attempts, lost.message)
        self._attempts += 1
        return self.backoff.next_delay_s(lost.at_least_s)

    def _worked(self, now: float) -> bool:
        """Whether the connection that just ended proved itself: it carried an event, or stayed
        up longer than the backoff's cap. One the broker accepts and drops at once does not,
        or such a broker would be hammered at the base delay."""
        if self._opened_at is None:
            return False
        return self._carried or now - self._opened_at >= self.backoff.cap_s

    def _announce(self, reason: str) -> None:
        self._announced = True
        if self._ever_opened:
            log.warning("inbox stream lost: %s; reconnecting", reason)
        else:
            log.warning("inbox stream unavailable: %s; retrying", reason)
