"""All configuration comes from the environment, read once into one ``Settings``.

Each setting is defined once (its variable ``FOOTPRINT_<NAME>``, its default, its bounds, its
parsing), as a field of the part of the concern that reads it: ``KafkaSettings``,
``PostgresSettings``, ``ClickHouseSettings``, ``KeySettings``, ``CollectorSettings``,
``ConsumerSettings``, ``QuerySettings``, ``ErasureSettings``, ``RetentionSettings``,
``StatsSettings``, ``GoalSettings``, ``DashboardSettings``. Each part is a frozen model that checks its own values.

``Settings`` is only the loader: every part at once, read from the environment (the field names
are the variables' names, so the parts add up to the one flat list the app's README shows). A
``Settings`` is each of its parts, so a function that needs one part says so in its signature
(``stores.ch_client`` takes ``ClickHouseSettings``) and receives the whole settings or, in a test,
the part alone. A few parts of the consumer need a handful of values from two parts: they receive
``ProcessorSettings``, a small frozen view derived by ``Settings.processor``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from footprint.goals import Funnel, Goal, parse_list, unknown_steps

_PG_BASE = "host=127.0.0.1 port=5432 dbname=footprint"
SESSION_TIMEOUT_MINUTES = 30  # a visit (session) ends after this long without events (stats.py)


class _Part(BaseModel):
    """A part of the settings: frozen, its fields the variables' names without ``FOOTPRINT_``."""

    model_config = ConfigDict(frozen=True)


class KafkaSettings(_Part):
    """Every Kafka client: where the brokers are, the topics and the group, TLS and the principals."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_topic: str = "web-logs-topic"
    kafka_dlq_topic: str = "web-logs-topic.dlq"
    kafka_group: str = "footprint-consumer"
    # static group membership (Kafka group.instance.id): a restarted consumer with the same id gets its
    # partitions back at once instead of after the session timeout; one id per consumer process
    kafka_group_instance_id: str = ""
    kafka_session_timeout_ms: int = Field(default=45_000, ge=6_000, le=300_000)
    # TLS and authentication of every Kafka client (kafka_client_config): SASL_SSL with SCRAM in a
    # deploy (the kafka role's default); the collector and the consumer are separate principals.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_ssl_ca_location: str = ""  # PEM file of the CA the brokers' certificates chain to
    kafka_collector_user: str = ""
    kafka_collector_password: SecretStr = SecretStr("")
    kafka_consumer_user: str = ""
    kafka_consumer_password: SecretStr = SecretStr("")

    def kafka_client_config(self, principal: Literal["collector", "consumer"]) -> dict[str, Any]:
        """bootstrap.servers and the security options of a Kafka client acting as ``principal``
        (the collector produces events; the consumer reads them, commits its group and writes the DLQ)."""
        config: dict[str, Any] = {"bootstrap.servers": self.kafka_bootstrap,
                                  "security.protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol.endswith("SSL"):
            config["ssl.endpoint.identification.algorithm"] = "https"
            if self.kafka_ssl_ca_location:
                config["ssl.ca.location"] = self.kafka_ssl_ca_location
        if self.kafka_security_protocol.startswith("SASL"):
            user, password = {
                "collector": (self.kafka_collector_user, self.kafka_collector_password),
                "consumer": (self.kafka_consumer_user, self.kafka_consumer_password),
            }[principal]
            config.update({"sasl.mechanism": self.kafka_sasl_mechanism, "sasl.username": user,
                           "sasl.password": password.get_secret_value()})
        return config


class PostgresSettings(_Part):
    """PostgreSQL: the writer's (consumer), the owner's (migrations) and the reader's connections."""

    pg_dsn: SecretStr = SecretStr(f"{_PG_BASE} user=footprint_writer")
    pg_owner_dsn: SecretStr = SecretStr(f"{_PG_BASE} user=footprint_owner")
    pg_reader_dsn: SecretStr = SecretStr(f"{_PG_BASE} user=footprint_reader")
    pg_writer_role: str = "footprint_writer"
    pg_reader_role: str = "footprint_reader"


class ClickHouseSettings(_Part):
    """ClickHouse: its hosts (one, or a cluster's), the database, the writer, owner and reader users, TLS."""

    # one host, or several "host[:port]" separated by commas (a cluster's replicas): a client
    # connects to the first that answers, in order (stores.ch_client); ch_port is the default port
    ch_host: str = "127.0.0.1"
    ch_port: int = Field(default=8123, ge=1, le=65535)
    # the ClickHouse cluster's name (the clickhouse role's clickhouse_cluster_name) when the store is
    # a cluster: migrations create replicated local tables and Distributed tables over them on every
    # host of ch_host; empty = a single server, as before
    ch_cluster: str = ""
    # with ch_cluster: the local tables are Replicated*MergeTree (replicas kept by the cluster's
    # Keeper / ZooKeeper); false = shards without replicas, plain *MergeTree local tables (the
    # clickhouse role's clickhouse_cluster_replicated: capacity, no redundancy, no coordination service)
    ch_replicated: bool = True
    ch_database: str = "footprint"
    ch_user: str = "footprint_writer"
    ch_password: SecretStr = SecretStr("")
    ch_owner_user: str = "footprint_owner"
    ch_owner_password: SecretStr = SecretStr("")
    ch_reader_user: str = "footprint_reader"
    ch_reader_password: SecretStr = SecretStr("")
    ch_secure: bool = False  # HTTPS to ClickHouse (the clickhouse role's clickhouse_tls_enabled)
    ch_ca_cert: str = ""  # PEM file of the CA ClickHouse's certificate chains to (empty: the system's CAs)

    @field_validator("ch_database")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not value.replace("_", "").isalnum():
            raise ValueError("must be a plain identifier (letters, digits, _)")
        return value

    @field_validator("ch_cluster")
    @classmethod
    def _cluster_name(cls, value: str) -> str:
        if value and not value.replace("_", "").isalnum():
            raise ValueError("must be empty or a plain identifier (letters, digits, _)")
        return value

    @field_validator("ch_host")
    @classmethod
    def _ch_hosts(cls, value: str) -> str:
        parse_ch_hosts(value, 8123)  # ValueError names the bad entry
        return value

    def ch_endpoints(self) -> list[tuple[str, int]]:
        """The ClickHouse hosts of ``ch_host`` as (host, port), in the order given."""
        return parse_ch_hosts(self.ch_host, self.ch_port)


class KeySettings(_Part):
    """The bearer keys: public ones send events, private ones read, query, erase and log in."""

    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)  # public: ingest only
    # private keys: read (GET /v1/events), query (POST /v1/queries), erase, dashboard login; never ingest
    private_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)

    @field_validator("api_keys", "private_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @model_validator(mode="after")
    def _keys_apart(self) -> KeySettings:
        public = {k.get_secret_value() for k in self.api_keys}
        if any(k.get_secret_value() in public for k in self.private_keys):
            raise ValueError("a key is both public (FOOTPRINT_API_KEYS) and private (FOOTPRINT_PRIVATE_KEYS)")
        return self


class CollectorSettings(_Part):
    """The collector (``serve``): where it listens, its limits, whom it believes, the visitor ids, countries."""

    collector_host: str = "127.0.0.1"
    collector_port: int = Field(default=8000, ge=1, le=65535)
    collector_workers: int = Field(default=1, ge=1)
    max_body_bytes: int = Field(default=512 * 1024, ge=1024)
    max_batch_events: int = Field(default=500, ge=1)
    producer_queue_max: int = Field(default=100_000, ge=1)
    site: str = "default"  # part of every anonymous visitor id (visitors.py)
    trusted_proxies: str = "127.0.0.1,::1"  # peers whose X-Forwarded-For is believed
    # clients (after the trusted-proxy rule) that may read the collector's /metrics; others need a private key
    metrics_from: str = "127.0.0.0/8,::1"
    site_origins: str = ""  # origins whose pages may send events with the browser snippet (CORS)
    # the legacy GeoIP country databases the collector resolves client addresses with (countries.py); "" = off
    geoip_database: str = "/usr/share/GeoIP/GeoIP.dat"
    geoip_database_v6: str = "/usr/share/GeoIP/GeoIPv6.dat"
    api_ack_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    retry_after_seconds: int = Field(default=5, ge=1)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        from footprint.visitors import parse_networks

        parse_networks(value)  # ValueError names the bad entry
        return value


class ConsumerSettings(_Part):
    """The consumer (``consume``): its batches, retries, dead letters, liveness and its /healthz."""

    batch_max_events: int = Field(default=5000, ge=1)
    batch_max_seconds: float = Field(default=1.0, gt=0)
    retry_max_seconds: float = Field(default=30.0, gt=0)
    dlq_max_value_bytes: int = Field(default=900_000, ge=1024)
    stuck_after_seconds: float = Field(default=60.0, gt=0)
    consumer_state_dir: str = ""  # where systemd records watchdog restarts (the unit's StateDirectory)
    consumer_http_host: str = "127.0.0.1"
    consumer_http_port: int = Field(default=8001, ge=0, le=65535)


class QuerySettings(_Part):
    """The limits of the read side's ClickHouse queries (readapi.py, query.py, sqlapi.py, csvexport.py)."""

    query_max_execution_seconds: float = Field(default=10.0, gt=0, le=600)
    query_max_result_rows: int = Field(default=10_000, ge=1)
    query_max_result_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    query_max_sql_bytes: int = Field(default=16 * 1024, ge=64)


class ErasureSettings(_Part):
    """Erasure requests (erasure.py): how long they are kept, how often the consumer re-reads them."""

    # erasure requests are kept (and applied to events arriving from Kafka) this long: the topic's retention
    erasure_keep_seconds: int = Field(default=7 * 86400, ge=60)
    erasure_refresh_seconds: float = Field(default=5.0, gt=0, le=300)


class RetentionSettings(_Part):
    """Retention (footprint.retention), whole months before the current one; 0 keeps everything."""

    retention_months: int = Field(default=13, ge=0, le=1200)  # raw events, both stores
    rollup_retention_months: int = Field(default=60, ge=0, le=1200)  # ClickHouse's hourly rollups

    @model_validator(mode="after")
    def _rollups_outlive_events(self) -> RetentionSettings:
        raw, rollup = self.retention_months, self.rollup_retention_months
        if rollup and (not raw or rollup < raw):
            raise ValueError(f"FOOTPRINT_ROLLUP_RETENTION_MONTHS ({rollup}) must be 0 (forever) or at least"
                             f" FOOTPRINT_RETENTION_MONTHS ({raw or 'forever'}): the rollups outlive the raw events")
        return self


class StatsSettings(_Part):
    """The statistics of the dashboard and ``footprint stats`` (stats.py)."""

    # the visits: a visitor's session ends after this many minutes without events
    session_timeout_minutes: int = Field(default=SESSION_TIMEOUT_MINUTES, ge=1, le=24 * 60)


class GoalSettings(_Part):
    """The inventory's goals and funnels (goals.py): JSON lists, each entry checked, a bad one named."""

    # [{"name": "Signed up", "event": "Signed Up"}, {"name": "Pricing", "page": "/pricing*"}]
    goals: Annotated[tuple[Goal, ...], NoDecode] = ()
    # [{"name": "Trial", "steps": ["Pricing", "Signed up"], "within": "visit"}] (within: visit or day)
    funnels: Annotated[tuple[Funnel, ...], NoDecode] = ()

    @field_validator("goals", mode="before")
    @classmethod
    def _goals(cls, value: Any) -> tuple[Goal, ...]:
        return parse_list(Goal, value, "FOOTPRINT_GOALS")

    @field_validator("funnels", mode="before")
    @classmethod
    def _funnels(cls, value: Any, info: ValidationInfo) -> tuple[Funnel, ...]:
        funnels: tuple[Funnel, ...] = parse_list(Funnel, value, "FOOTPRINT_FUNNELS")
        for i, funnel in enumerate(funnels):  # the goals come first (a bad one: none here, its own error said)
            if missing := unknown_steps(funnel, info.data.get("goals", ())):
                raise ValueError(f"FOOTPRINT_FUNNELS[{i}] ({funnel.name!r}): steps {missing} are not goals of"
                                 " FOOTPRINT_GOALS (an inventory's funnel steps through the inventory's goals)")
        return funnels


class DashboardSettings(_Part):
    """The dashboard (``dashboard``): where it listens, its login and sessions, its Health panel."""

    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = Field(default=8002, ge=1, le=65535)
    dashboard_password: SecretStr = SecretStr("")
    dashboard_session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    dashboard_refresh_seconds: float = Field(default=5.0, ge=1, le=300)
    # the dashboard's Health panel (dashboard/health.py): Prometheus' URL (empty: the panel says how to
    # set it), the CA its certificate chains to (empty: ch_ca_cert, the stores' CA), each query's
    # timeout, and how long one round of answers is reused
    prometheus_url: str = ""
    prometheus_ca_cert: str = ""
    prometheus_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    dashboard_health_cache_seconds: float = Field(default=5.0, ge=0, le=300)

    @field_validator("prometheus_url")
    @classmethod
    def _prometheus_url(cls, value: str) -> str:
        from urllib.parse import urlsplit

        if not value:
            return value
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 (a port out of range or not a number raises here)
        except ValueError as exc:
            raise ValueError(f"{value!r}: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(f"want http(s)://host:port[/path] (Prometheus' address), not {value!r}")
        return value


@dataclass(frozen=True)
class ProcessorSettings:
    """What the consumer's processor uses (``Settings.processor``): its Kafka names, batches and patience."""

    topic: str
    group: str
    principal: str  # the consumer's SASL user ("": none configured)
    session_timeout_ms: int
    batch_max_events: int
    batch_max_seconds: float
    retry_max_seconds: float
    stuck_after_seconds: float


# the parts from the last to the first: pydantic orders the fields from the last base on, so the
# fields (and the errors of several bad values) keep the order of the parts above
class Settings(DashboardSettings, GoalSettings, StatsSettings, RetentionSettings, ErasureSettings, QuerySettings,
               ConsumerSettings, CollectorSettings, KeySettings, ClickHouseSettings, PostgresSettings,
               KafkaSettings, BaseSettings):
    """Every part, read from the environment at once; every field maps to ``FOOTPRINT_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="FOOTPRINT_", extra="ignore", frozen=True)

    log_level: str = "INFO"

    def processor(self) -> ProcessorSettings:
        return ProcessorSettings(
            topic=self.kafka_topic, group=self.kafka_group, principal=self.kafka_consumer_user,
            session_timeout_ms=self.kafka_session_timeout_ms, batch_max_events=self.batch_max_events,
            batch_max_seconds=self.batch_max_seconds, retry_max_seconds=self.retry_max_seconds,
            stuck_after_seconds=self.stuck_after_seconds)


def parse_ch_hosts(text: str, default_port: int) -> list[tuple[str, int]]:
    """``"a, b:8124, [fd00::1]:8123"`` -> [("a", default_port), ("b", 8124), ("fd00::1", 8123)]."""
    out: list[tuple[str, int]] = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            raise ValueError(f"an empty host in {text!r}")
        host, port = entry, default_port
        if entry.startswith("["):  # [v6] or [v6]:port
            host, _, rest = entry[1:].partition("]")
            if rest:
                if not rest.startswith(":") or not rest[1:].isdigit():
                    raise ValueError(f"{entry!r}: want host, host:port or [v6]:port")
                port = int(rest[1:])
        elif entry.count(":") == 1:
            host, _, text_port = entry.partition(":")
            if not text_port.isdigit():
                raise ValueError(f"{entry!r}: want host, host:port or [v6]:port")
            port = int(text_port)
        if not host or not 0 < port < 65536:
            raise ValueError(f"{entry!r}: want host, host:port or [v6]:port")
        out.append((host, port))
    return out
