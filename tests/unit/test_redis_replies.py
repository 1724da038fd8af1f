"""What a Redis error reply means to a caller (broker.api.errors.redis_outage): a reply that says
"not now" is a 503 to retry, whether it came as itself or wrapped by a script (Redis < 7); any
other is the broker's own failure, a 500, never the caller's."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MovedError, ReadOnlyError, RedisError, ResponseError

from tearline.broker.api.errors import redis_outage
from tearline.clients.errors import InternalError, UnavailableError

WRAPPED = "Error running script (call to f_88c9): @user_script:1: @user_script: 1: -{}"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        pytest.param(RedisConnectionError("refused"), "store_unavailable", id="unreachable"),
        pytest.param(ReadOnlyError("You can't write"), "store_unavailable", id="read-only-typed"),
        pytest.param(
            ResponseError("READONLY You can't write against a read only replica."),
            "store_busy",
            id="read-only-plain",
        ),
        pytest.param(
            ResponseError(WRAPPED.format("READONLY You can't write against a read only replica.")),
            "store_busy",
            id="read-only-wrapped-by-a-script",
        ),
        pytest.param(
            ResponseError("ERR " + WRAPPED.format("READONLY You can't write against a replica.")),
            "store_busy",
            id="read-only-wrapped-by-a-script-as-the-pipeline-reads-it",
        ),
        pytest.param(ResponseError("OOM command not allowed"), "store_busy", id="out-of-memory"),
        pytest.param(
            ResponseError(
                WRAPPED.format("OOM command not allowed when used memory > 'maxmemory'.")
            ),
            "store_busy",
            id="out-of-memory-wrapped-by-a-script",
        ),
        pytest.param(ResponseError("MISCONF cannot persist"), "store_busy", id="cannot-persist"),
        pytest.param(ResponseError("NOREPLICAS Not enough"), "store_busy", id="no-replicas"),
        pytest.param(ResponseError("CLUSTERDOWN The cluster is down"), "store_busy", id="down"),
        pytest.param(ResponseError("TRYAGAIN Multiple keys"), "store_busy", id="try-again"),
        # A Redis Cluster node where a standalone Redis belongs (broker.app logs why).
        pytest.param(MovedError("14596 127.0.0.1:17102"), "store_unavailable", id="moved-typed"),
        pytest.param(ResponseError("MOVED 14596 127.0.0.1:17102"), "store_busy", id="moved"),
        pytest.param(ResponseError("CROSSSLOT Keys in request"), "store_busy", id="cross-slot"),
    ],
)
def test_a_reply_that_says_not_now_is_a_503_to_retry(error: RedisError, code: str) -> None:
    outcome = redis_outage(error)
    assert isinstance(outcome, UnavailableError)
    assert outcome.code == code


@pytest.mark.parametrize(
    "message",
    [
        pytest.param("ERR wrong number of arguments for 'xadd' command", id="our-bug"),
        pytest.param(WRAPPED.format("ERR bad argument"), id="our-script-bug"),
        pytest.param("ERR " + WRAPPED.format("ERR bad argument"), id="our-script-bug-with-err"),
        pytest.param(
            "Error running script (call to f_1): @user_script:9: attempt to index nil",
            id="our-script-bug-unwrapped",
        ),
        pytest.param("WRONGTYPE Operation against a key", id="wrong-type"),
        pytest.param("readonly in lowercase is not a reply code", id="not-a-code"),
    ],
)
def test_any_other_reply_is_the_brokers_own_failure(message: str) -> None:
    assert isinstance(redis_outage(ResponseError(message)), InternalError)
