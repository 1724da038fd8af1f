"""The broker's settings, read from the environment (``TEARLINE_*``, and the usual ``REDIS_URL``).

Every duration and size names its unit, so ``TEARLINE_REPLAY_WINDOW_S=60`` cannot be misread as
milliseconds. Relative paths are relative to the working directory of ``tearline serve``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024
# The longest long poll the API offers (`GET /v1/inbox?wait=`).
LONG_POLL_LIMIT_S = 60

PositiveInt = Annotated[int, Field(gt=0)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TEARLINE_",
        # Code and tests build settings by field name; the environment uses the aliases.
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )

    # Plain REDIS_URL too, because that is what compose files, PaaS add-ons and operators set.
    # None means "start an embedded redis-server" (§9).
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("TEARLINE_REDIS_URL", "REDIS_URL")
    )
    policies_dir: Path = Path("policies")
    # How often the policy folder is read for changes (by content: see broker.reload).
    policy_poll_s: Annotated[float, Field(gt=0)] = 5.0
    data_dir: Path = Path("data")
    # Loopback unless told otherwise: exposing the API is a decision, not a default.
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    workers: PositiveInt = 1
    # Prometheus cannot sign requests, and the broker's /metrics answers signed operators only:
    # `tearline serve` opens this port for it, unauthenticated, on metrics_host (loopback unless
    # told otherwise; in a container, a network partners cannot reach). None: no such listener.
    metrics_port: Annotated[int | None, Field(ge=1, le=65535)] = None
    metrics_host: str = "127.0.0.1"

    max_envelope_bytes: PositiveInt = 1 * MiB
    # POST /v1/reports:batch: how many envelopes one request may carry, and its whole size.
    max_batch_reports: Annotated[int, Field(gt=0, le=1000)] = 100
    max_batch_bytes: PositiveInt = 8 * MiB
    # RFC 9421 `created` older than this, or a nonce seen within it, is refused; the issue caps
    # it at 60 s so the nonce cache stays small and a captured request is useless quickly.
    replay_window_s: Annotated[int, Field(gt=0, le=60)] = 60
    # How old an envelope's `created` may be at ingest. Ingest is idempotent on id, so a replayed
    # report is harmless; this bound keeps the idempotency records from having to live forever.
    max_report_age_s: PositiveInt = 300
    visibility_timeout_ms: PositiveInt = 30_000
    # How often the audit trail gets a signed checkpoint (when it has new entries).
    audit_checkpoint_s: Annotated[float, Field(gt=0)] = 10.0
    max_deliveries: PositiveInt = 5
    # The longest `GET /v1/inbox?wait=` the API promises (its schema says the same).
    long_poll_max_s: Annotated[int, Field(gt=0, le=LONG_POLL_LIMIT_S)] = LONG_POLL_LIMIT_S
    sse_heartbeat_s: PositiveInt = 15

    # Redis clients, configured here rather than inherited from redis-py (whose defaults have
    # changed between releases and once cut every long poll at 5 s). Two pools: one for the
    # commands every request needs (ingest, acks, nonces), one only for blocking reads, so
    # subscribers waiting can never take the connections that ingest and authentication need.
    redis_connect_timeout_s: Annotated[float, Field(gt=0)] = 2.0
    # For commands that do not block; the blocking pool adds the longest block it issues.
    redis_socket_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    redis_health_check_s: PositiveInt = 15
    redis_pool_size: PositiveInt = 64
    # How long a request waits for a free connection of the command pool before a 503.
    redis_pool_wait_s: Annotated[float, Field(gt=0)] = 2.0
    # Blocking readers (long polls and SSE streams waiting on Redis) per broker process, and
    # per partner: one partner can hold at most its share, never the whole pool.
    blocking_readers_max: PositiveInt = 64
    blocking_readers_per_partner: PositiveInt = 8
    retention_days: PositiveInt = 30
    # How often inboxes are trimmed to the retention window.
    retention_check_s: Annotated[float, Field(gt=0)] = 3600.0
    appendfsync: Literal["everysec", "always"] = "everysec"

    # The URL partners sign against (RFC 9421 @target-uri): behind a proxy that rewrites scheme,
    # host or path, the public one; several, comma-separated, when partners reach the broker by
    # several names (the one whose authority matches the request's Host is used). None: the
    # address the broker listens on (on loopback, `localhost` too); a request naming another
    # host is refused, so a signature made for one deployment cannot replay on another.
    public_url: str | None = None

    # --- bounds on what a client controls before it is authenticated (DESIGN §11) ---
    max_header_count: PositiveInt = 100
    max_header_bytes: PositiveInt = 16 * 1024
    # The request line and headers must arrive within this of the connection opening (or of
    # the previous response), or the connection is closed (broker.http_protocol).
    header_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    # A body (envelope, ack, preview) must arrive within this, or the request is a 408.
    body_read_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    # uvicorn closes a connection idle between requests after this.
    keep_alive_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    # Requests per second (and burst) one partner may make to one broker process, once signed.
    partner_rate_per_s: Annotated[float, Field(gt=0)] = 100.0
    partner_burst: PositiveInt = 200
    # Failed signatures per second (and burst) one source address may cost a broker process;
    # past that its requests are refused before any signature is verified.
    failed_auth_rate_per_s: Annotated[float, Field(gt=0)] = 2.0
    failed_auth_burst: PositiveInt = 20
    # An SSE stream is closed after this; the client reconnects with a fresh signature, so an
    # open stream never outlives the authorisation it was opened with by long.
    stream_max_lifetime_s: Annotated[float, Field(gt=0)] = 3600.0
    # A signed request costs one token of its signer's budget, plus one per this many bytes of
    # body: a 1 MiB envelope costs 17, so bytes are budgeted, not only requests (issue 16).
    request_bytes_per_token: PositiveInt = 64 * 1024
    # A preview's body holds one label: anything much larger is refused (413) before the
    # signature is checked or the JSON parsed (clients.protocol.label bounds the label itself).
    max_preview_bytes: PositiveInt = 32 * 1024
    # A page of GET /v1/inbox (or a batch of SSE events) stops before the entry that would take
    # its envelopes past this; it always holds at least one entry.
    max_inbox_page_bytes: PositiveInt = 4 * MiB

    # --- storage quotas (broker.store: counted in the ingest script, atomically) ---
    # Entries waiting in one partner's inbox (not yet acknowledged, set aside or withdrawn),
    # and their envelopes' bytes: a recipient that stops reading cannot make Redis grow.
    max_inbox_queued_reports: PositiveInt = 10_000
    max_inbox_queued_bytes: PositiveInt = 256 * MiB
    # What one originator holds in the store: its reports accepted within the retention window
    # (each is kept that long, acknowledged or not), and their envelopes' bytes.
    max_originator_stored_reports: PositiveInt = 100_000
    max_originator_stored_bytes: PositiveInt = 512 * MiB
    # Redis memory: the embedded redis-server's maxmemory (with noeviction: a full Redis
    # refuses writes, it never drops data); new reports are refused (503 store_full) above
    # this fraction of Redis's maxmemory, so acks, reads and recalls keep working.
    redis_maxmemory_bytes: PositiveInt = 2048 * MiB
    store_high_water_fraction: Annotated[float, Field(gt=0, le=1)] = 0.9
    # How often the broker reads Redis's memory use (INFO memory).
    store_memory_check_s: Annotated[float, Field(gt=0)] = 2.0

    # --- connections, per broker process, counted before any byte is read ---
    max_connections: PositiveInt = 4096
    max_connections_per_address: PositiveInt = 256
    # Descriptors kept for the broker's own files (beyond its Redis pools): policy reloads, log
    # files, the embedded Redis's pipes. max_connections is lowered to fit under RLIMIT_NOFILE.
    reserved_file_descriptors: PositiveInt = 64
    # Proxies whose X-Forwarded-For names the client (uvicorn's forwarded_allow_ips); none by
    # default, so a client cannot pick its own source address for the per-address budget.
    trusted_proxies: str = ""
    # The broker's receipt-signing key; defaults to data_dir/broker.identity.json.
    broker_key_path: Path = Path("data/broker.identity.json")

    @model_validator(mode="before")
    @classmethod
    def _derive_key_path(cls, data: Any) -> Any:
        # Derived before validation so the field stays a plain Path that follows data_dir.
        if isinstance(data, dict) and data.get("broker_key_path") in (None, ""):
            data = {k: v for k, v in data.items() if k != "broker_key_path"}
            data["broker_key_path"] = Path(data.get("data_dir") or "data") / "broker.identity.json"
        return data

    @model_validator(mode="after")
    def _per_partner_within_total(self) -> Settings:
        if self.blocking_readers_per_partner > self.blocking_readers_max:
            raise ValueError(
                "blocking_readers_per_partner cannot exceed blocking_readers_max "
                f"({self.blocking_readers_per_partner} > {self.blocking_readers_max})"
            )
        if self.max_connections_per_address > self.max_connections:
            raise ValueError(
                "max_connections_per_address cannot exceed max_connections "
                f"({self.max_connections_per_address} > {self.max_connections})"
            )
        # A quota smaller than one envelope would refuse every report of that size for good.
        for name in ("max_inbox_queued_bytes", "max_originator_stored_bytes"):
            if getattr(self, name) < self.max_envelope_bytes:
                raise ValueError(f"{name} cannot be below max_envelope_bytes")
        return self

    @field_validator("redis_url", "public_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # `REDIS_URL=` in a compose file or shell means "not set", not "connect to ''".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("public_url")
    @classmethod
    def _public_urls(cls, value: str | None) -> str | None:
        if not value:
            return value
        urls = [u.strip().rstrip("/") for u in value.split(",") if u.strip()]
        for url in urls:
            scheme, sep, rest = url.partition("://")
            if scheme not in ("http", "https") or not sep or not rest.split("/")[0]:
                raise ValueError(f"{url!r} is not an http(s) URL such as https://tearline.example")
        return ",".join(urls)

    @property
    def public_urls(self) -> tuple[str, ...]:
        return tuple(self.public_url.split(",")) if self.public_url else ()


def get_settings(**overrides: Any) -> Settings:
    """Settings from the environment; keyword ``overrides`` (field names) win over it."""
    return Settings(**overrides)
