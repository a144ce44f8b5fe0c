"""Logs and metrics.

Logs: structlog, JSON in production and console in a terminal. Secrets and personal identifiers are removed
twice. ``redact``, a processor (a pure function of the event dict), runs before the renderer: a value under a
sensitive key, at any depth, is replaced; every other text is scrubbed by pattern (e-mail addresses, phone and
identity numbers, also glued to other text: ``CCCD:001089012345``, ``tel0912345678``), and so is what an
object or an exception would render as (its ``repr`` or message, with the keys it quotes). Then the renderer's
output itself goes through ``scrub_rendered`` (``RedactingRenderer``), so nothing an earlier processor missed
reaches the log: the patterns again, and ``key=value`` / ``'key': value`` pairs whose key is sensitive.

A name cannot be found by pattern (any words can be a name): names are redacted by key only (``ChuHoSo``,
``HoTen``, ``name``, ``applicant_name``… in ``SENSITIVE_KEYS``). So code must never put a citizen's name in a
log field under another key, nor in an error message that is logged: the failure recorder and the pipeline
log the error's class, reason, field and our own message (which names the field and the rule, never the
value); text written by the far side (``quotes_remote_text``) goes to the failure table and the DLQ only.

Metrics: one Prometheus registry per running service, so tests can run several.
"""

from __future__ import annotations

import gc
import logging
import re
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, TextIO

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REDACTED = "[redacted]"

# Keys whose values are secret or identify a person, wherever they appear (compared case-insensitively).
SENSITIVE_KEYS = frozenset(
    key.lower()
    for key in (
        # secrets
        "password", "passwd", "secret", "token", "session", "authorization", "api_key", "sasl_password",
        "MaXacThuc",
        # identifiers of a person
        "id_number", "phone", "email", "portal_account_id", "SoDienThoai", "Email", "Fax", "MaDoiTuong",
        "SoDinhDanh", "DinhDanhCHS", "CCCD", "CMND", "SoCCCD", "SoCMND",
        # names, addresses, and free text that names the applicant: by key only, no pattern finds a name
        "applicant", "name", "full_name", "applicant_name", "citizen_name", "ChuHoSo", "TenChuHoSo", "HoTen",
        "HoVaTen", "NguoiNop", "TenNguoiNop", "NguoiDaiDien", "DiaChiChuHoSo", "DiaChi", "address",
        "TrichYeuHoSo", "summary",
    )
)
# Parts of a key that make it sensitive whatever surrounds them (``inbound_token``, ``EmailChuHoSo``).
SENSITIVE_KEY_PARTS = ("password", "secret", "token", "chuhoso", "hoten", "nguoinop", "dinhdanh")

# Identifiers that may hide inside free text (an error message quoting a value, say), glued to letters or
# punctuation or not; never a part of a longer number or of a decimal (a date-time, an offset, a duration).
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_NOT_AFTER_A_NUMBER = r"(?<!\d)(?<!\d[.,])"
_NOT_BEFORE_A_NUMBER = r"(?!\d)(?![.,]\d)"
_PHONE = re.compile(_NOT_AFTER_A_NUMBER + r"(?:\+?84|0)[\s.-]?\d{2,3}[\s.-]?\d{3}[\s.-]?\d{3,4}"
                    + _NOT_BEFORE_A_NUMBER)
_ID_NUMBER = re.compile(_NOT_AFTER_A_NUMBER + r"\d{9,13}" + _NOT_BEFORE_A_NUMBER)  # CMND 9, tax code 10/13, CCCD 12
# A quoted value (JSON, a repr, a repr inside a JSON string; looked at up to 4,096 characters, so that a long line
# costs linear time), or a bare one up to a separator.
_QUOTED = r"""(?:\\"(?:(?!\\").){0,4096}\\"|"(?:[^"\\]|\\.){0,4096}"|'(?:[^'\\]|\\.){0,4096}')"""
_BARE = r"""[^\s,;&)}\]{\['"][^\s,;&)}\]]*"""
# 'key': value, "key": value (a dict's repr, JSON) and key=value (a dataclass's repr, a query, the console). The
# value is looked at, not consumed: a pair whose key is not sensitive may hold text that holds one that is.
_KEY_VALUE = re.compile(
    r"""(?:(?P<quote>\\"|["'])(?P<quoted_key>[\w.-]{1,64})(?P=quote)\s*:\s*|(?<![\w.-])(?P<key>[\w.-]{1,64})=)"""
    r"""(?=(?P<value>""" + _QUOTED + "|" + _BARE + "))")
# A number that is a whole value on a rendered line (``"offset": 1234567890``, ``offset=1234567890``): a
# field's own number, not an identity inside text; the event dict's keys decide about those.
_WHOLE_VALUE_BEFORE = re.compile(r'(?:": |=(?:\x1b\[[\d;]*m)?)$')
_WHOLE_VALUE_AFTER = re.compile(r"(?:[,}\]\s]|\x1b|$)")


def is_sensitive_key(key: object) -> bool:
    name = str(key).lower()
    return name in SENSITIVE_KEYS or any(part in name for part in SENSITIVE_KEY_PARTS)


def _redact_pairs(text: str) -> str:
    pieces: list[str] = []
    done = 0
    for match in _KEY_VALUE.finditer(text):
        if match.start() < done or not is_sensitive_key(match.group("quoted_key") or match.group("key")):
            continue
        value = match.group("value")
        if value.startswith('\\"'):
            replacement = f'\\"{REDACTED}\\"'
        elif value[0] in "\"'":
            replacement = f"{value[0]}{REDACTED}{value[0]}"
        else:
            replacement = REDACTED
        pieces += [text[done:match.start("value")], replacement]
        done = match.end("value")
    return "".join([*pieces, text[done:]]) if pieces else text


def _identifiers(text: str, *, keep_whole_values: bool) -> str:
    def replace(match: re.Match[str]) -> str:
        if keep_whole_values and _WHOLE_VALUE_BEFORE.search(match.string, max(0, match.start() - 16), match.start()) \
                and _WHOLE_VALUE_AFTER.match(match.string, match.end()):
            return match.group(0)
        return REDACTED

    text = _EMAIL.sub(REDACTED, text)
    text = _PHONE.sub(replace, text)
    return _ID_NUMBER.sub(replace, text)


def scrub_text(text: str) -> str:
    """``text`` without identifiers: sensitive ``key=value`` / ``'key': value`` pairs, e-mail addresses, phone and
    identity numbers."""
    return _identifiers(_redact_pairs(text), keep_whole_values=False)


def scrub_rendered(line: str) -> str:
    """A rendered log line scrubbed like ``scrub_text``, except numbers that are a field's whole value (an offset
    of ten digits is not a phone number)."""
    return _identifiers(_redact_pairs(line), keep_whole_values=True)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {scrub_text(str(k)): REDACTED if is_sensitive_key(k) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v) for v in value]
    if isinstance(value, BaseException):
        # What a renderer would show of it, scrubbed now: its message may quote a value.
        return scrub_text(f"{type(value).__name__}: {value}")
    return scrub_text(repr(value))  # what the renderers would show of it, scrubbed


# Left for the processors after this one: ``format_exc_info`` (before it, in our chain) renders exc_info.
_PASSED_THROUGH = frozenset({"exc_info", "stack_info"})


def redact(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: drop sensitive keys and scrub identifiers from every value and key."""
    for key in list(event_dict):
        if key in _PASSED_THROUGH:
            continue
        value = event_dict.pop(key)
        event_dict[scrub_text(key)] = REDACTED if is_sensitive_key(key) else _scrub(value)
    return event_dict


class RedactingRenderer:
    """The last step of the chain: renders with ``renderer``, then scrubs the line (``scrub_rendered``)."""

    def __init__(self, renderer: Callable[[Any, str, MutableMapping[str, Any]], str]) -> None:
        self._renderer = renderer

    def __call__(self, logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
        return scrub_rendered(self._renderer(logger, method, event_dict))


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None, *,
                      cache: bool = True) -> None:
    """Set up structlog once for the process. ``fmt`` is auto, json or console; logs go to stderr
    unless ``stream`` is given. ``cache``: each logger keeps this set-up from its first use on (the daemon:
    no per-call assembly); a short command that may run inside another program (a test) passes False, so a
    later set-up, structlog's ``capture_logs`` included, still reaches every logger."""
    out = stream if stream is not None else sys.stderr
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: Any = structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer(
        ensure_ascii=False
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            RedactingRenderer(renderer),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=cache,
    )


class Metrics:
    """The service's Prometheus metrics, on a registry of its own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events_consumed = Counter(
            "portal_sync_events_consumed", "Kafka records read", ["topic"], registry=r
        )
        self.event_outcomes = Counter(
            "portal_sync_event_outcomes",
            "How each consumed event ended: synced, skipped or failed (recorded and dead-lettered), "
            "with the rule or error reason",
            ["outcome", "reason"],
            registry=r,
        )
        self.audit_rows_dropped = Counter(
            "portal_sync_audit_rows_dropped", "Audit rows of adapter calls dropped (the state store could not "
            "keep up or refused them)", registry=r)
        self.portal_calls = Counter(
            "portal_sync_portal_calls", "Calls to the national adapter", ["service", "result"], registry=r
        )
        self.portal_call_seconds = Histogram(
            "portal_sync_portal_call_seconds", "Duration of one adapter call", ["service"], registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.push_latency = Histogram(
            "portal_sync_push_latency_seconds",
            "From consuming an event to the portal acknowledging it (retries included)",
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        )
        self.consumer_lag = Gauge(
            "portal_sync_consumer_lag", "Records behind the partition's high watermark",
            ["topic", "partition"], registry=r,
        )
        self.truncated_fields = Counter(
            "portal_sync_truncated_fields", "Values cut to a declared length limit", ["field"], registry=r
        )
        self.service_waits = Counter(
            "portal_sync_service_waits",
            "Times the pipeline paused because of a cause every event would meet (adapter down, login "
            "refused, state store unreachable)", ["reason"], registry=r,
        )
        self.waiting = Gauge(
            "portal_sync_waiting", "1 while the pipeline waits out a service-wide error", registry=r
        )
        self.retries = Counter(
            "portal_sync_portal_retries", "Adapter calls retried after a retryable error", ["service", "reason"],
            registry=r,
        )
        # The way back: submissions and payments from the national side into Kafka.
        self.outbox_published = Counter(
            "portal_sync_outbox_published", "Messages of the way back published (once each)", ["topic"], registry=r)
        self.submissions = Counter(
            "portal_sync_submissions", "Submission revisions met, by how they ended: published, duplicate "
            "(met before), rejected (with the reason), acknowledged (told to the portal)",
            ["via", "outcome", "reason"], registry=r)
        self.submission_polls = Counter(
            "portal_sync_submission_polls", "Polls of DanhSachHoSo by result", ["result"], registry=r)
        self.attachments_stored = Counter(
            "portal_sync_attachments_stored", "Files too large to travel inline, written to the attachments "
            "directory", registry=r)
        self.payment_notifications = Counter(
            "portal_sync_payment_notifications", "Payment Platform result notifications by what became of "
            "them: accepted, or rejected with the reason (forged, replayed, malformed, unknown reference, ...)",
            ["result"], registry=r)
        self.payment_queries = Counter(
            "portal_sync_payment_queries", "QUERY calls to the Payment Platform by result", ["result"], registry=r)
        self.payment_outcomes = Counter(
            "portal_sync_payment_outcomes", "Payment outcomes published, by outcome and by the path that learnt "
            "it first", ["outcome", "path"], registry=r)
        self.payment_requests = Counter(
            "portal_sync_payment_requests", "payment.requested events read, by result", ["result"], registry=r)
        self.inbound_conflicts = Counter(
            "portal_sync_inbound_conflicts", "Submission revisions met with two different bodies (an inbound push "
            "against another push or the poll): neither published until the portal's own record settles it",
            ["outcome"], registry=r)
        self.public_requests = Counter(
            "portal_sync_public_requests", "Calls on the public listener by endpoint and reply",
            ["endpoint", "reply"], registry=r)
        self.statistics_pushes = Counter(
            "portal_sync_statistics_pushes", "UpdateStatistic records sent, by outcome (pushed, failed); an "
            "agency's month already held by the portal is not sent again", ["outcome"], registry=r)
        self.month_dossiers = Gauge(
            "portal_sync_month_dossiers", "The current month's dossiers per agency (received, resolved, late, "
            "overdue, pending), as of the last statistics run", ["agency", "figure"], registry=r)

        self.gc_pauses = Histogram(
            "portal_sync_gc_pause_seconds", "Time the process stood still in one garbage collection",
            ["generation"], registry=r, buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
        )

    def watch_collector(self) -> Callable[[], None]:
        """Time every garbage collection into ``gc_pauses`` from now on; returns what stops it."""
        pauses = [self.gc_pauses.labels(str(generation)) for generation in range(3)]
        started = 0.0

        def on_collection(phase: str, info: dict[str, int]) -> None:
            nonlocal started
            if phase == "start":
                started = time.perf_counter()
            else:
                pauses[info["generation"]].observe(time.perf_counter() - started)

        gc.callbacks.append(on_collection)
        return lambda: gc.callbacks.remove(on_collection)

    def observe_portal_call(self, service: str, result: str, seconds: float) -> None:
        self.portal_calls.labels(service, result).inc()
        self.portal_call_seconds.labels(service).observe(seconds)
