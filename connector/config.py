"""The one settings model: a YAML file, overridden by environment variables.

Environment overrides use ``PORTAL_SYNC__SECTION__KEY`` (e.g. ``PORTAL_SYNC__KAFKA__BOOTSTRAP_SERVERS``).
Loaded once at start-up and passed down; nothing else reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCHEMAS_DIR = PROJECT_ROOT / "schemas"
DEFAULT_MAPPINGS_DIR = PROJECT_ROOT / "mappings"
ENV_PREFIX = "PORTAL_SYNC__"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the field and the rule."""


def secret_value(given: SecretStr | None, file: Path | None, *, name: str) -> str:
    """A secret given in the settings (as given) or in a file (stripped: editors end files with a newline);
    "" when there is none. ``name`` is the file's setting, for the error."""
    if file is not None:
        try:
            return file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{name}: cannot read ({exc.strerror})") from exc
    return given.get_secret_value() if given is not None else ""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Topics(Section):
    dossier_events: str = "dossier.events"
    dead_letter: str = "dossier.events.dlq"
    # The way back: what the national side sends us, published for the one-stop system.
    submissions: str = "portal.submissions"
    payments: str = "portal.payments"
    # Local payment.requested events: the payments this service watches for an outcome.
    payment_requests: str = "payment.requests"


class KafkaSettings(Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "portal-sync"
    client_id: str = "portal-sync"
    topics: Topics = Topics()
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    max_poll_records: int = Field(500, ge=1, le=100_000)
    # Events larger than this are dead-lettered unread: a bound on what one hostile message can cost.
    max_event_bytes: int = Field(1_048_576, ge=1024)
    session_timeout_ms: int = Field(10_000, ge=1000)
    # The consumer leaves the group if it does not poll within this (the pipeline polls continuously).
    max_poll_interval_ms: int = Field(300_000, ge=10_000)
    # How long the broker may hold a fetch that finds nothing new. Apache Kafka answers as soon as data
    # arrives, so a short wait costs only idle polls; a broker that waits it out adds it to the latency.
    fetch_max_wait_ms: int = Field(100, ge=0, le=10_000)
    request_timeout_ms: int = Field(40_000, ge=1000)


class RetrySettings(Section):
    """Waiting out a service-wide error (adapter down or throttling, login refused, state store
    unreachable): such an error never dead-letters an event, it is retried until it clears, with
    exponential backoff and full jitter, or after the ``Retry-After`` the adapter asked for.

    Unless the adapter answers everyone else: a record whose own pushes keep failing (a 5xx or a timeout
    that only it meets) while other calls succeed is the problem itself. A batch holding it is split
    after ``split_batch_after_attempts`` such failures; the record alone becomes a recorded failure
    after ``record_deadline_seconds`` of failing while the adapter was otherwise healthy (time with the
    circuit breaker open does not count, so an outage never turns the backlog into failures)."""

    initial_backoff_seconds: float = Field(0.5, gt=0)
    max_backoff_seconds: float = Field(15.0, gt=0)
    max_retry_after_seconds: float = Field(300.0, gt=0)
    split_batch_after_attempts: int = Field(3, ge=1)
    record_deadline_seconds: float = Field(300.0, gt=0)


class RateLimitSettings(Section):
    """What this service may ask of the adapter, whatever the backlog: a shared national resource."""

    requests_per_second: float = Field(50.0, gt=0)
    max_concurrent_requests: int = Field(8, ge=1, le=1000)


class CircuitBreakerSettings(Section):
    """Stop calling an adapter that is failing: after ``failure_ratio`` of the last ``window`` calls
    failed (service-wide errors only), stay open ``open_seconds``, then let one probe through."""

    failure_ratio: float = Field(0.5, gt=0, le=1)
    window: int = Field(20, ge=1)
    min_calls: int = Field(10, ge=1)
    open_seconds: float = Field(5.0, gt=0)


class PortalSettings(Section):
    adapter_url: str = "http://127.0.0.1:8080"
    auth_endpoint: str = "/api/auth"
    integration_endpoint: str = "/api/integration"
    share_endpoint: str = "/api/share"
    username: str = ""
    password: SecretStr | None = None
    password_file: Path | None = None
    madonvi: str = ""
    # Sent only when set: the test adapter misbehaves when it receives one.
    dstcode: str | None = None
    timeout_seconds: float = Field(20.0, gt=0, le=600)
    # Answers (besides HTTP 401) that mean "log in again"; the adapters disagree, so it is data.
    session_expired_codes: tuple[str, ...] = ("-2", "401")
    retry: RetrySettings = RetrySettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    circuit_breaker: CircuitBreakerSettings = CircuitBreakerSettings()

    @field_validator("adapter_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("auth_endpoint", "integration_endpoint", "share_endpoint")
    @classmethod
    def _path(cls, value: str) -> str:
        return value if value.startswith("/") else "/" + value

    @model_validator(mode="after")
    def _one_password(self) -> PortalSettings:
        if self.password is not None and self.password_file is not None:
            raise ValueError("set either password or password_file, not both")
        return self

    def password_value(self) -> str:
        """The password, read from ``password_file`` when that is how it was given."""
        return secret_value(self.password, self.password_file, name="portal.password_file")


class PushSettings(Section):
    """How events become adapter calls: batches, concurrency across dossiers, and the memory bound."""

    max_batch_records: int = Field(100, ge=1, le=1000)
    max_batch_bytes: int = Field(1_000_000, ge=1024)
    linger_ms: int = Field(20, ge=0, le=10_000)
    # Consumption pauses above these (events read but not finished), whatever the backlog.
    max_in_flight_events: int = Field(3_000, ge=1)
    max_in_flight_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    commit_interval_ms: int = Field(500, ge=10)
    shutdown_grace_seconds: float = Field(30.0, ge=0)


class StateSettings(Section):
    url: str = "sqlite+aiosqlite:///var/portal-sync.db"
    # The audit trail of adapter calls keeps this many days.
    audit_retention_days: int = Field(30, ge=1, le=3650)


class MappingsSettings(Section):
    dir: Path = DEFAULT_MAPPINGS_DIR


class AdminSettings(Section):
    """The admin listener: /healthz, /readyz and /metrics for everyone who can reach it; the /api/ routes
    (failures, replay) only with ``Authorization: Bearer <token>``. No token configured: /api/ answers 401
    to every call."""

    listen: str = "127.0.0.1:9464"
    token: SecretStr | None = None
    token_file: Path | None = None

    @model_validator(mode="after")
    def _one_token(self) -> AdminSettings:
        if self.token is not None and self.token_file is not None:
            raise ValueError("set either token or token_file, not both")
        return self

    def token_value(self) -> str | None:
        """The API token, read from ``token_file`` when that is how it was given; None when there is none."""
        return secret_value(self.token, self.token_file, name="admin.token_file").strip() or None

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be HOST:PORT")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class SubmissionSettings(Section):
    """Citizen submissions made on the national portal: polled with ``DanhSachHoSo`` (when ``poll`` is on)
    and accepted on the public listener's inbound endpoint, published once per revision to
    ``kafka.topics.submissions``."""

    poll: bool = False
    poll_interval_seconds: float = Field(60.0, gt=0, le=86_400)
    # Each poll lists from the stored cursor minus this many days: the portal lists some submissions late.
    overlap_days: int = Field(2, ge=0, le=31)
    # A longer window (after a long stop) is walked in pieces of this many days.
    max_window_days: int = Field(31, ge=1, le=366)
    # The agencies (donViXuLy) to poll; empty: portal.madonvi.
    agencies: tuple[str, ...] = ()
    page_size: int = Field(100, ge=1, le=100)
    # Submissions fetched and published side by side.
    concurrency: int = Field(4, ge=1, le=64)
    # Files up to this size travel inside the Kafka record; larger ones go to attachments_dir.
    max_inline_bytes: int = Field(512 * 1024, ge=0)
    max_file_bytes: int = Field(20 * 1024 * 1024, ge=1)
    max_dossier_bytes: int = Field(50 * 1024 * 1024, ge=1)
    max_files: int = Field(200, ge=1, le=10_000)
    # The whole record, under the broker's message limit (Kafka's default is 1 MiB).
    max_record_bytes: int = Field(900 * 1024, ge=16 * 1024)
    attachments_dir: Path = Path("var/attachments")

    @field_validator("agencies")
    @classmethod
    def _agency_codes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for code in value:
            if not code or len(code) > 64 or any(ch.isspace() for ch in code):
                raise ValueError("each agency code must be 1-64 characters without spaces")
        return value


class PaymentSettings(Section):
    """The national Payment Platform: result notifications on the public listener, and ``QUERY`` for
    payments still pending. Outcomes are published once per reference to ``kafka.topics.payments``."""

    enabled: bool = False
    platform_url: str = "http://127.0.0.1:8080"
    query_path: str = "/pp/query"
    partner_code: str = ""
    secret: SecretStr | None = None
    secret_file: Path | None = None
    message_version: str = "1.0.0"
    timeout_seconds: float = Field(20.0, gt=0, le=600)
    # QUERY backoff for a pending payment: first after this, doubling (with jitter) up to the maximum.
    query_initial_seconds: float = Field(30.0, gt=0)
    query_max_seconds: float = Field(900.0, gt=0)
    # A payment with no outcome this long after it was requested is published as expired.
    expiry_seconds: float = Field(86_400.0, gt=0)
    # How often the due QUERYs and expiries are looked for.
    scan_interval_seconds: float = Field(5.0, gt=0, le=3600)
    max_concurrent_queries: int = Field(4, ge=1, le=64)

    @field_validator("platform_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("query_path")
    @classmethod
    def _path(cls, value: str) -> str:
        return value if value.startswith("/") else "/" + value

    @model_validator(mode="after")
    def _usable(self) -> PaymentSettings:
        if self.secret is not None and self.secret_file is not None:
            raise ValueError("set either secret or secret_file, not both")
        if self.enabled and (not self.partner_code or (self.secret is None and self.secret_file is None)):
            raise ValueError("enabled payments need partner_code and secret (or secret_file)")
        return self

    def secret_value(self) -> str:
        """The shared secret, read from ``secret_file`` when that is how it was given."""
        return secret_value(self.secret, self.secret_file, name="payments.secret_file")


class PublicSettings(Section):
    """The public listener, apart from the admin one: where the national side calls us (a new dossier
    pushed by DVCQG, the Payment Platform's result notification). Not served unless ``listen`` is set."""

    listen: str | None = None
    submissions_path: str = "/dvcqg/hoso"
    payments_path: str = "/payment-platform/notify"
    # When set, the inbound dossier push must carry ``Authorization: Bearer <token>``.
    inbound_token: SecretStr | None = None

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be HOST:PORT")
        return value

    @field_validator("submissions_path", "payments_path")
    @classmethod
    def _path(cls, value: str) -> str:
        return value if value.startswith("/") else "/" + value

    @model_validator(mode="after")
    def _distinct(self) -> PublicSettings:
        if self.submissions_path == self.payments_path:
            raise ValueError("submissions_path and payments_path must differ")
        return self


class LogSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    # auto: console when stderr is a terminal, JSON otherwise.
    format: Literal["auto", "json", "console"] = "auto"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    kafka: KafkaSettings = KafkaSettings()
    portal: PortalSettings = PortalSettings()
    push: PushSettings = PushSettings()
    state: StateSettings = StateSettings()
    mappings: MappingsSettings = MappingsSettings()
    admin: AdminSettings = AdminSettings()
    submissions: SubmissionSettings = SubmissionSettings()
    payments: PaymentSettings = PaymentSettings()
    public: PublicSettings = PublicSettings()
    log: LogSettings = LogSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the file, which arrives as init values.
        return env_settings, init_settings


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read ``path`` (YAML), apply environment overrides, validate; raise ConfigError naming the field."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
        except yaml.YAMLError as exc:
            # Not str(exc): it quotes the offending line, which may be a password.
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or "syntax error"
            raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        data = loaded
    data.update(overrides)
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, source=str(path) if path else "settings")) from exc


def describe_validation_error(exc: ValidationError, *, source: str) -> str:
    lines = [f"{source}: {exc.error_count()} problem(s)"]
    for err in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)


__all__ = [
    "DEFAULT_MAPPINGS_DIR",
    "SCHEMAS_DIR",
    "AdminSettings",
    "ConfigError",
    "InitSettingsSource",
    "KafkaSettings",
    "LogSettings",
    "MappingsSettings",
    "PaymentSettings",
    "PortalSettings",
    "PublicSettings",
    "RetrySettings",
    "Settings",
    "StateSettings",
    "SubmissionSettings",
    "load_settings",
]
