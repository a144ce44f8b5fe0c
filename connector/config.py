"""The one settings model: a YAML file, overridden by environment variables.

Environment overrides use ``PORTAL_SYNC__SECTION__KEY`` (e.g. ``PORTAL_SYNC__KAFKA__BOOTSTRAP_SERVERS``).
Loaded once at start-up and passed down; nothing else reads the environment.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
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

from connector.errors import ConfigError

# Package data (installed with the wheel, read where the package lives): the contracts, and the example mappings
# that are the default for `demo`, the simulator and a config that names no mappings directory.
SCHEMAS_DIR = Path(str(resources.files("connector") / "schemas"))
DEFAULT_MAPPINGS_DIR = Path(str(resources.files("connector") / "mappings"))
ENV_PREFIX = "PORTAL_SYNC__"


# The rules that several settings share, one copy each, as types.


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value.rstrip("/")


def _url_path(value: str) -> str:
    return value if value.startswith("/") else "/" + value


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("must be HOST:PORT")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]  # http(s)://…, without a trailing slash
UrlPath = Annotated[str, AfterValidator(_url_path)]  # a path on a server, always starting with "/"
HostPort = Annotated[str, AfterValidator(_host_port)]  # where a listener binds: HOST:PORT




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
    # aiokafka's default; must stay well under the session timeout (a third of it or less, as Kafka advises).
    heartbeat_interval_ms: int = Field(3_000, ge=100)
    # The consumer leaves the group if it does not poll within this (the pipeline polls continuously).
    max_poll_interval_ms: int = Field(300_000, ge=10_000)
    # How long the broker may hold a fetch that finds nothing new. Apache Kafka answers as soon as data
    # arrives, so a short wait costs only idle polls; a broker that waits it out adds it to the latency.
    fetch_max_wait_ms: int = Field(100, ge=0, le=10_000)
    request_timeout_ms: int = Field(40_000, ge=1000)

    @model_validator(mode="after")
    def _heartbeat_within_session(self) -> KafkaSettings:
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be less than session_timeout_ms")
        return self


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


# The services portal-sync calls, by their REST names: the SOAP operations are named the same unless
# ``portal.soap.operations`` renames them for a platform's WSDL.
SOAP_SERVICES = ("DangNhap", "DongBoHoSoMC", "CapNhatTienDoHoSoMC", "DongBoTrangThaiHoSo", "TraCuuHoSo",
                 "DanhSachHoSo", "LayTaiLieuHoSo", "CapNhatDaNhanHoSo", "UpdateStatistic")


class SoapSettings(Section):
    """The SOAP transport through the ministry's integration platform (``portal.transport: soap``), driven by a
    WSDL read from local files at start (never fetched). Everything a platform's WSDL may name differently is
    here: the file, the service and port, the endpoint, the operation names and the header elements. Header and
    fault elements are global elements of the WSDL's schemas, named ``Name`` (found in any namespace) or
    ``{namespace}Name``."""

    wsdl: Path = SCHEMAS_DIR / "soap" / "portal.wsdl"
    # The endpoint calls go to; unset, the WSDL port's soap:address.
    address: HttpUrl | None = None
    service: str | None = None  # unset: the WSDL's only (or first) service
    port: str | None = None  # unset: the service's only (or first) SOAP port
    # Our service name (REST) -> the WSDL's operation, where the platform names it otherwise.
    operations: dict[str, str] = {}
    # session: log in with the login operation, send the token in the session header. username_token:
    # WS-Security UsernameToken on every call (PasswordText, or PasswordDigest with nonce and created).
    auth: Literal["session", "username_token"] = "session"
    password_type: Literal["text", "digest"] = "digest"  # noqa: S105 - a kind, not a password
    session_header: str = "Session"
    # WS-Addressing MessageID (a UUID per call, in the audit trail), Action and To.
    addressing: bool = True
    # A header naming the dossiers of the call; null: not sent.
    dossier_header: str | None = "HoSoLienQuan"
    fault_detail: str = "PortalFault"
    # Fault codes (the detail's error_code) that mean "try later": retried like HTTP 503.
    retryable_fault_codes: tuple[str, ...] = ("BUSY", "TIMEOUT", "429", "503")

    @field_validator("operations")
    @classmethod
    def _known_services(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(SOAP_SERVICES))
        if unknown:
            raise ValueError(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(SOAP_SERVICES)}")
        return value


class PortalSettings(Section):
    # rest: the DVCQG adapter's JSON (adapter_url and its endpoints); soap: the integration platform's SOAP
    # services (``soap``). Retries, rate limit, breaker, batching and sessions are the same for both.
    transport: Literal["rest", "soap"] = "rest"
    adapter_url: HttpUrl = "http://127.0.0.1:8080"
    auth_endpoint: UrlPath = "/api/auth"
    integration_endpoint: UrlPath = "/api/integration"
    share_endpoint: UrlPath = "/api/share"
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
    soap: SoapSettings = SoapSettings()

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

    listen: HostPort = "127.0.0.1:9464"
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
    platform_url: HttpUrl = "http://127.0.0.1:8080"
    query_path: UrlPath = "/pp/query"
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

    @model_validator(mode="after")
    def _usable(self) -> PaymentSettings:
        if self.secret is not None and self.secret_file is not None:
            raise ValueError("set either secret or secret_file, not both")
        if self.enabled and (not self.partner_code or (self.secret is None and self.secret_file is None)):
            raise ValueError("enabled payments need partner_code and secret (or secret_file)")
        return self

    @field_validator("secret")
    @classmethod
    def _not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            # An empty secret makes every checksum anyone can compute verify.
            raise ValueError("must not be empty or blank")
        return value

    def secret_value(self) -> str:
        """The shared secret, read from ``secret_file`` when that is how it was given; never empty (a checksum
        over an empty secret proves nothing): an empty file is a ConfigError."""
        value = secret_value(self.secret, self.secret_file, name="payments.secret_file")
        if not value.strip():
            raise ConfigError("payments.secret_file: must not be empty or blank")
        return value


class PublicSettings(Section):
    """The public listener, apart from the admin one: where the national side calls us (a new dossier
    pushed by DVCQG, the Payment Platform's result notification). Not served unless ``listen`` is set.

    A listener reachable from outside needs a credential: a bearer token for the dossier push (``inbound_token``
    or ``inbound_token_file``), or mutual TLS (``tls_cert_file``, ``tls_key_file`` and ``tls_client_ca_file``:
    HTTPS, and every caller must present a certificate signed by that CA), or both. Without one the service
    refuses to start, unless ``allow_unauthenticated`` is set (the simulator and tests only; warned at start).
    The Payment Platform's notification is proved by its checksum, not by the token."""

    listen: HostPort | None = None
    submissions_path: UrlPath = "/dvcqg/hoso"
    payments_path: UrlPath = "/payment-platform/notify"
    # The inbound dossier push must carry ``Authorization: Bearer <token>``.
    inbound_token: SecretStr | None = None
    inbound_token_file: Path | None = None
    # HTTPS; with a client CA, mutual TLS.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    allow_unauthenticated: bool = False

    @model_validator(mode="after")
    def _distinct(self) -> PublicSettings:
        if self.submissions_path == self.payments_path:
            raise ValueError("submissions_path and payments_path must differ")
        return self

    @model_validator(mode="after")
    def _credential(self) -> PublicSettings:
        if self.inbound_token is not None and self.inbound_token_file is not None:
            raise ValueError("set either inbound_token or inbound_token_file, not both")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file (mutual TLS) needs tls_cert_file and tls_key_file")
        token = self.inbound_token is not None and bool(self.inbound_token.get_secret_value().strip())
        credential = token or self.inbound_token_file is not None or self.mutual_tls
        if self.listen is not None and not credential and not self.allow_unauthenticated:
            raise ValueError(
                "listen: a public listener needs a credential: inbound_token or inbound_token_file (a bearer "
                "token), or mutual TLS (tls_cert_file, tls_key_file and tls_client_ca_file); "
                "allow_unauthenticated: true is for the simulator and tests only")
        return self

    @property
    def mutual_tls(self) -> bool:
        return self.tls_client_ca_file is not None and self.tls_cert_file is not None

    def inbound_token_value(self) -> str | None:
        """The push's bearer token, read from ``inbound_token_file`` when that is how it was given; None when
        there is none (an empty file is a ConfigError when the token is the listener's only credential)."""
        value = secret_value(self.inbound_token, self.inbound_token_file,
                             name="public.inbound_token_file").strip() or None
        if value is None and self.inbound_token_file is not None and not (self.mutual_tls
                                                                          or self.allow_unauthenticated):
            raise ConfigError("public.inbound_token_file: must hold the token (it is empty)")
        return value


class StatsSettings(Section):
    """Statistics pushed with UpdateStatistic, per agency × month: the current month every day at ``daily_at``
    (Asia/Ho_Chi_Minh), and the month before as final figures for ``final_days`` days after it closed (a late
    event still corrects them). A record the portal already holds is not sent again."""

    push: bool = True
    daily_at: time = time(1, 0)
    final_days: int = Field(default=5, ge=1, le=31)
    # Agencies to push for; empty: every agency the facts know.
    agencies: tuple[str, ...] = ()


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
    stats: StatsSettings = StatsSettings()
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


# The settings file is small, plain YAML; anything else is refused before it costs memory or time.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_CONFIG_DEPTH = 32
MAX_CONFIG_VALUES = 100_000  # after aliases are expanded: a billion laughs stops here
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
# A quoted part of a YAML error that may be a value of the file (an alias or tag name); single characters
# ('\t') and token names ('<block end>') are kept.
_QUOTED_VALUE = re.compile(r"'(?!<[\w ]+>')[^'\n]{2,}'")


class _SettingsLoader(yaml.SafeLoader):
    """``yaml.SafeLoader``, stricter, for the settings file only: a key twice in one mapping, a key that is
    not text, a tag that plain YAML does not define (``!!python/...``, ``!anything``), nesting deeper than
    ``MAX_CONFIG_DEPTH`` and aliases that expand past ``MAX_CONFIG_VALUES`` values are errors (a
    ``yaml.YAMLError`` with the place, the rule in ``problem``)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_CONFIG_DEPTH:
                peek: Callable[[], yaml.Event] = self.peek_event  # untyped in the stubs
                mark: yaml.error.Mark | None = peek().start_mark  # type: ignore[assignment]
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_CONFIG_DEPTH} levels", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> yaml.Node | None:
        node = super().compose_document()
        if node is not None and _expanded_size(node) > MAX_CONFIG_VALUES:
            raise yaml.composer.ComposerError(
                None, None, f"its aliases expand it to more than {MAX_CONFIG_VALUES} values", node.start_mark)
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # a merge key (<<) may repeat what it merges: the mapping's own keys win
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                raise yaml.constructor.ConstructorError(None, None, "every key must be text", key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, "a key appears twice in one mapping",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _integer(loader: _SettingsLoader, node: yaml.Node) -> Any:
    try:
        return yaml.constructor.SafeConstructor.construct_yaml_int(loader, node)  # type: ignore[arg-type]
    except ValueError:  # more digits than Python converts (4,300)
        raise yaml.constructor.ConstructorError(None, None, "a number with too many digits",
                                                node.start_mark) from None


def _refuse_tag(_loader: _SettingsLoader, node: yaml.Node) -> Any:
    raise yaml.constructor.ConstructorError(None, None, "a tag plain YAML does not define (!..., !!python/...) is "
                                            "not allowed", node.start_mark)


_SettingsLoader.add_constructor(None, _refuse_tag)
_SettingsLoader.add_constructor("tag:yaml.org,2002:int", _integer)


def _expanded_size(root: yaml.Node) -> int:
    """How many values ``root`` holds once every alias is expanded, counting each node once (linear time); stops
    counting a little past ``MAX_CONFIG_VALUES``."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        if children_done or not children:
            sizes[id(node)] = min(1 + sum(sizes.get(id(child), 0) for child in children), MAX_CONFIG_VALUES + 1)
            continue
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)
    return sizes[id(root)]


def _read_config(path: Path) -> Any:
    """The YAML document of ``path``; ConfigError naming the place and the rule, never quoting the file (a
    broken line may hold a password)."""
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: cannot read (over the limit of {MAX_CONFIG_BYTES} bytes for a settings file)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read (not UTF-8 at byte {exc.start})") from None
    try:
        return yaml.load(text, Loader=_SettingsLoader)  # noqa: S506 - a SafeLoader, stricter
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        problem = f"a control character (U+{exc.character:04X}) is not allowed" if isinstance(exc.character, int) \
            else "a character that is not allowed"
        raise ConfigError(f"{path}: 1 problem(s)\n  line {line}, column {column}: not valid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        # Not str(exc): it quotes the offending line, which may be a password.
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "(file)"
        problem = _QUOTED_VALUE.sub("(a value of the file)", getattr(exc, "problem", None) or "syntax error")
        raise ConfigError(f"{path}: 1 problem(s)\n  {where}: not valid YAML: {problem}") from None
    except RecursionError:  # cannot happen within MAX_CONFIG_DEPTH; kept so nothing escapes as a traceback
        raise ConfigError(f"{path}: 1 problem(s)\n  (file): not valid YAML: nested too deeply") from None


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read ``path`` (YAML), apply environment overrides, validate; raise ConfigError naming the field."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = _read_config(path)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        data = loaded
    data.update(overrides)
    try:
        return Settings(**data)
    except ValidationError as exc:
        # Not chained: pydantic's error quotes the values, and a traceback of the ConfigError would show them.
        raise ConfigError(describe_validation_error(exc, source=str(path) if path else "settings")) from None


def describe_validation_error(exc: ValidationError, *, source: str) -> str:
    """One line per problem: where (the field's path) and the rule, never the value. A key of the input that is
    not a field name is not shown either (a broken line can turn a password into a key)."""
    lines = [f"{source}: {exc.error_count()} problem(s)"]
    for err in exc.errors(include_url=False, include_input=False):
        where = ".".join(_shown(part) for part in err["loc"]) or "(top level)"
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)


def _shown(part: int | str) -> str:
    return str(part) if isinstance(part, int) or _FIELD_NAME.fullmatch(part) else "(a key that is not a field name)"


__all__ = [
    "DEFAULT_MAPPINGS_DIR",
    "SCHEMAS_DIR",
    "AdminSettings",
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
    "StatsSettings",
    "SubmissionSettings",
    "load_settings",
]
