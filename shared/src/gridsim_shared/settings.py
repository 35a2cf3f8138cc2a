"""Settings for every gridsim process: one prefix (``GRIDSIM_``), nested groups split by ``__``.

``GRIDSIM_MQTT__URL=mqtt://broker:1883`` sets ``Settings().mqtt.url``. Nothing else in the project reads
``os.environ`` for configuration: every service builds its settings from this module in ``main()``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "API_ROLES",
    "ApiRole",
    "BillingSettings",
    "DbSettings",
    "FeasibilitySettings",
    "GatewaySettings",
    "HealthSettings",
    "HomeAssistantSettings",
    "LogSettings",
    "MqttSettings",
    "Settings",
    "SimSettings",
    "SupervisionSettings",
    "role_and_key",
]


class MqttSettings(BaseModel):
    """The broker every service talks to."""

    url: str = "mqtt://127.0.0.1:1883"
    base_topic: str = Field(default="gridsim", pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    # MQTT 3.1.1 is the level every supported broker speaks (mosquitto, rumqttd's v4 port).
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    username: str | None = None
    password: str | None = None
    # TLS (mqtts:// URLs): the CA that signed the broker's certificate, and this client's certificate and
    # key when the broker asks for one. Empty ca_file with mqtts:// uses the system's trusted CAs.
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    # Larger incoming messages are logged, counted and dropped unread (the broker caps what it accepts too).
    max_message_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    keepalive_s: int = Field(default=30, ge=5)
    rpc_timeout_s: float = Field(default=10.0, gt=0)
    # MQTT 5 only: how long the broker keeps a persistent session (the aggregator's) after a disconnect,
    # and how many unacknowledged messages it may send one client at once (bounds the consumer's memory).
    session_expiry_s: int = Field(default=86_400, ge=0)
    receive_maximum: int = Field(default=1000, ge=1, le=65_535)

    @property
    def host(self) -> str:
        """Host name parsed from the URL."""
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def tls(self) -> bool:
        """True for ``mqtts://`` (or ``ssl://``) URLs."""
        return urlsplit(self.url).scheme in {"mqtts", "ssl"}

    @property
    def port(self) -> int:
        """Port parsed from the URL (1883 when absent, 8883 for mqtts://)."""
        return urlsplit(self.url).port or (8883 if self.tls else 1883)

    @field_validator("url")
    @classmethod
    def _mqtt_scheme(cls, value: str) -> str:
        if urlsplit(value).scheme not in {"mqtt", "tcp", "mqtts", "ssl"}:
            msg = f"GRIDSIM_MQTT__URL must start with mqtt:// or mqtts:// (got {value!r})"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _login_out_of_the_url(self) -> MqttSettings:
        # mqtt://user:password@host:port works too; the login moves to its fields so the URL (which
        # /health and logs show) never carries the password.
        parts = urlsplit(self.url)
        if parts.username is None:
            return self
        if self.username is None:
            self.username = unquote(parts.username)
            self.password = unquote(parts.password) if parts.password is not None else self.password
        self.url = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
        return self


class DbSettings(BaseModel):
    """The PostgreSQL (or TimescaleDB) database."""

    url: str = "postgresql://postgres@127.0.0.1:5432/gridsim"
    # The deployment's schema; each service's tables live in ``<schema_name>_<service>`` beside it (roles.py),
    # so it leaves room for the longest suffix (``_feasibility``) in PostgreSQL's 63 characters. Tests give
    # each test its own.
    schema_name: str = Field(default="public", pattern=r"^[a-z_][a-z0-9_]{0,50}$")
    pool_min: int = Field(default=1, ge=1)
    pool_max: int = Field(default=8, ge=1)
    # Raw minute readings older than this are dropped (rollups are kept). 0 keeps them for ever.
    raw_retention_days: int = Field(default=0, ge=0)


class LogSettings(BaseModel):
    """Logging: JSON lines when not on a terminal, console text on one."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "console"] = "auto"


class SimSettings(BaseModel):
    """The simulation: clock, physics seed, demo world, sharding, publishing."""

    start: datetime = datetime(2025, 6, 20, tzinfo=UTC)
    speed: float = Field(default=1440.0, gt=0, description="simulated seconds per real second")
    interval_s: int = Field(default=60, ge=1, le=3600, description="simulated seconds per reading")
    seed: int = 42
    autostart: bool = True
    demo_world: bool = True
    demo_world_file: str | None = None
    # shard "i/n": this instance simulates the feeders whose index % n == i; instance 0 owns the clock.
    shard: str = Field(default="0/1", pattern=r"^\d+/\d+$")
    # batch: one columnar message per transformer per interval (what the aggregator stores);
    # both: also one message per meter on its reading topic, for subscribers that want single meters.
    publish: Literal["batch", "both"] = "both"
    # How long `step` waits for the aggregator's watermark before it answers anyway (seconds).
    step_ack_timeout_s: float = Field(default=30.0, gt=0)
    # Flow control (docs/operations.md): never more than this many intervals, or batch messages, published
    # beyond the aggregator's durable watermark (one interval may always go). When the window is full the
    # real-time clock waits (`wait`: the clock slows, nothing is lost) or skips intervals (`drop`: counted
    # in dropped_intervals and flow_dropped); a step always waits. The batches wait in the broker's queue
    # for the aggregator, so max_ahead_messages must not exceed what the broker queues per subscriber
    # (Mosquitto's max_queued_messages): the default is a stock Mosquitto's 1000; the project's broker
    # (mosquitto.conf, the embedded one) queues 100,000 and compose and the launcher raise it to match.
    max_ahead_intervals: int = Field(default=240, ge=1)
    max_ahead_messages: int = Field(default=1000, ge=1)
    behind_policy: Literal["wait", "drop"] = "wait"


ApiRole = Literal["read", "operate", "admin"]
# Each role may do what the ones before it may.
API_ROLES: tuple[ApiRole, ...] = ("read", "operate", "admin")


class SupervisionSettings(BaseModel):
    """Supervised tasks and heartbeats (docs/operations.md)."""

    # The retained status is republished this often with ``heartbeat_at``; a reader calls a service
    # stalled when its last heartbeat is older than ``stale_after_beats`` periods.
    heartbeat_s: float = Field(default=5.0, gt=0)
    stale_after_beats: float = Field(default=4.0, ge=2)
    # A task that crashes more than this many times within the window ends the process (non-zero exit).
    max_restarts: int = Field(default=5, ge=0)
    restart_window_s: float = Field(default=60.0, gt=0)
    restart_backoff_s: float = Field(default=0.5, gt=0)
    max_backoff_s: float = Field(default=10.0, gt=0)
    # A task with a watchdog (meter-sim's clock) that makes no progress this long is restarted.
    stall_after_s: float = Field(default=60.0, gt=0)
    # Prometheus metrics on http://0.0.0.0:{metrics_port}/metrics (0: off; the gateway serves /metrics).
    metrics_port: int = Field(default=0, ge=0, le=65535)


class GatewaySettings(BaseModel):
    """The HTTP gateway."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # X-API-Key values, each "role:key" (role read, operate or admin) or a bare key (admin). When any is set,
    # mutating routes need a key of their role (401 without one, 403 with too small a role).
    api_keys: list[str] = []
    # With keys configured, reads stay open unless this is false (then every route but /health needs one).
    public_reads: bool = True
    # Binding beyond loopback with no key is refused unless this says the gateway may run open on purpose.
    allow_open: bool = False
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, description="largest request body")
    max_streams_per_client: int = Field(
        default=8, ge=1, description="live streams open at once per key or IP"
    )
    overload_webhook_url: str | None = None
    overload_webhook_share: float = Field(default=0.9, gt=0)
    # Signs each webhook body: X-Gridsim-Signature: sha256=<hex HMAC of the body>. Unsigned when unset.
    overload_webhook_secret: str | None = None
    # DEG World Engine streams (/meter-data-simulator/...): the original's periods, in real seconds.
    we_transformer_stream_s: float = Field(default=10.0, gt=0)
    we_dataset_poll_s: float = Field(default=1.0, gt=0)
    # POST /simulation/step of more intervals than this answers 202 with a job (progress, ETA, cancel).
    step_job_intervals: int = Field(default=1440, ge=1)
    # A job steps in chunks sized to take about this long, so progress is fresh and cancel is prompt.
    step_job_chunk_s: float = Field(default=1.0, gt=0)
    # GET /meter/stream?limit=1 is answered from the live batches for up to this many meters (the ones
    # asked for most recently; 1.8 KB each with three readings, tracemalloc); 0 turns it off (every
    # request reads the database).
    latest_readings_meters: int = Field(default=10_000, ge=0)
    # GET /grid answers 422 above this many meters (with meters) or grid nodes (page with /grid/children,
    # /grid/search): 20,000 meters are ~3 MB of JSON; 51,000 nodes (5M meters) 18 MB, more than the
    # meter-sim round trip's 10 s allow while it ticks five million meters.
    grid_tree_max_meters: int = Field(default=20_000, ge=0)
    grid_tree_max_nodes: int = Field(default=20_000, ge=0)

    @field_validator("api_keys")
    @classmethod
    def _keys_long_enough(cls, value: list[str]) -> list[str]:
        for entry in value:
            if not role_and_key(entry)[1]:
                msg = f"GRIDSIM_GATEWAY__API_KEYS: {entry!r} has an empty key"
                raise ValueError(msg)
        return value

    def key_roles(self) -> dict[str, ApiRole]:
        """Each configured key and its role."""
        roles: dict[str, ApiRole] = {}
        for entry in self.api_keys:
            role, key = role_and_key(entry)
            roles[key] = role
        return roles


def role_and_key(entry: str) -> tuple[ApiRole, str]:
    """``"operate:abc"`` -> ("operate", "abc"); a bare key (or an unknown prefix) is an admin key."""
    head, sep, tail = entry.partition(":")
    for role in API_ROLES:
        if sep and head == role:
            return role, tail
    return "admin", entry


class BillingSettings(BaseModel):
    """Tariff: flat by default; time-of-use when ``tou_peak_rate`` is set."""

    currency: str = "INR"
    grid_rate: Decimal = Decimal("6.0")
    grid_credit_rate: Decimal = Decimal("3.0")
    tou_peak_rate: Decimal | None = None
    tou_peak_start_hour: int = Field(default=16, ge=0, le=23)
    tou_peak_end_hour: int = Field(default=21, ge=1, le=24)
    # IANA zone of billing months and time-of-use hours (the simulated clock itself runs in UTC).
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            msg = f"GRIDSIM_BILLING__TIMEZONE must be an IANA time zone such as UTC or Asia/Kolkata (got {value!r})"
            raise ValueError(msg) from exc
        return value

    @model_validator(mode="after")
    def _peak_window(self) -> BillingSettings:
        if self.tou_peak_start_hour >= self.tou_peak_end_hour:
            msg = "billing.tou_peak_start_hour must be before billing.tou_peak_end_hour"
            raise ValueError(msg)
        return self


class FeasibilitySettings(BaseModel):
    """Connection feasibility."""

    radius_m: float = Field(default=2000.0, gt=0, description="how far a 'nearby' transformer may be")
    consumption_share: float = Field(default=0.8, gt=0, le=1, description="share of kVA for consumption")
    production_share: float = Field(default=0.3, gt=0, le=1, description="share of kVA for injection")
    # Decide on max(booked, measured peak) instead of the booked (nameplate) load alone.
    decide_on_measured_load: bool = False
    measured_window_h: int = Field(default=168, ge=1, description="hours of rollups the measured peak covers")


class HealthSettings(BaseModel):
    """Grid health (docs/grid-health.md): repair times, overload trips, service-level thresholds."""

    # Log-normal time to repair a fault or an overload trip: median (minutes) and the σ of its log.
    repair_median_min: float = Field(default=90.0, gt=0)
    repair_sigma: float = Field(default=0.8, ge=0, le=3)
    # A transformer trips (its meters lose supply) when its winding hot spot passes this (°C); IEEE C57.91
    # allows 180 °C for short-time emergency loading, the highest of its limits.
    trip_hot_spot_c: float = Field(default=180.0, gt=0)
    # Monthly SLA thresholds per feeder: a report under one of them raises an `sla_breach` event.
    sla_completeness: float = Field(default=0.99, ge=0, le=1, description="readings stored / expected")
    sla_voltage_compliance: float = Field(default=0.95, ge=0, le=1, description="share of readings in band")
    sla_latency_p95_s: float = Field(default=5.0, gt=0, description="95th percentile, seconds")


class UtilitySettings(BaseModel):
    """The utility's programmes: forecasts, dynamic prices, demand response, the OpenADR VTN."""

    # Local time (hour-of-day and weekday features, price periods, the baseline's days) is the world's:
    # the IANA zone of the climate most meters are in (gridsim_shared.climate), daylight saving included.
    # Real-time price: ToU rate × (1 + slope × (load / 28-day mean − 1)), clipped to [floor, cap] × rate.
    rtp_slope: float = Field(default=0.8, ge=0)
    rtp_floor_share: float = Field(default=0.5, gt=0)
    rtp_cap_share: float = Field(default=3.0, gt=0)
    # Days of scored forecasts behind GET /forecast/score.
    score_window_days: int = Field(default=7, ge=1, le=90)
    # Forecast-peak events: how long, and at least how far ahead (hours) of the peak they are issued.
    auto_event_hours: int = Field(default=2, ge=1, le=12)
    # OpenADR 2.0b VTN (openleadr): off when port is 0.
    openadr_port: int = Field(default=8181, ge=0, le=65535)
    openadr_host: str = "127.0.0.1"
    openadr_vtn_id: str = "gridsim-vtn"


class HomeAssistantSettings(BaseModel):
    """Home Assistant MQTT discovery: chosen meters appear as energy sensors (off by default)."""

    enabled: bool = False
    # Meter codes to announce (case-insensitive); each becomes a device with kWh, W and V sensors.
    meters: list[str] = []
    discovery_prefix: str = Field(default="homeassistant", pattern=r"^[A-Za-z0-9_-]{1,64}$")


class Settings(BaseSettings):
    """Every gridsim setting, read from ``GRIDSIM_*`` environment variables (and a ``.env`` file)."""

    model_config = SettingsConfigDict(
        env_prefix="GRIDSIM_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    instance: str = Field(default="0", pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    mqtt: MqttSettings = MqttSettings()
    db: DbSettings = DbSettings()
    log: LogSettings = LogSettings()
    sim: SimSettings = SimSettings()
    gateway: GatewaySettings = GatewaySettings()
    billing: BillingSettings = BillingSettings()
    feasibility: FeasibilitySettings = FeasibilitySettings()
    homeassistant: HomeAssistantSettings = HomeAssistantSettings()
    supervision: SupervisionSettings = SupervisionSettings()
    health: HealthSettings = HealthSettings()
    utility: UtilitySettings = UtilitySettings()
