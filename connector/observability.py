"""Logs and metrics.

Logs: structlog, JSON in production and console in a terminal. A redaction processor (a pure function of
the event dict, like every structlog processor) removes secrets and personal identifiers before any
renderer sees them. Metrics: one Prometheus registry per running service, so tests can run several.
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
        "password", "passwd", "secret", "token", "session", "authorization", "api_key", "sasl_password",
        "id_number", "phone", "email", "applicant", "portal_account_id",
        "SoDienThoai", "Email", "Fax", "ChuHoSo", "MaDoiTuong", "SoDinhDanh", "DinhDanhCHS",
        "MaXacThuc",
    )
)

# Identifiers that may hide inside free text (an error message quoting a value, say).
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_PHONE = re.compile(r"(?<![\w.])(\+?84|0)[\s.-]?\d{2,3}[\s.-]?\d{3}[\s.-]?\d{3,4}(?![\w.])")
_ID_NUMBER = re.compile(r"(?<![\w.])\d{9,13}(?![\w.])")  # CMND 9, tax code 10/13, CCCD 12


def scrub_text(text: str) -> str:
    text = _EMAIL.sub(REDACTED, text)
    text = _PHONE.sub(REDACTED, text)
    return _ID_NUMBER.sub(REDACTED, text)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return {k: REDACTED if str(k).lower() in SENSITIVE_KEYS else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def redact(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: drop sensitive keys and scrub identifiers from every string value."""
    for key in list(event_dict):
        if key.lower() in SENSITIVE_KEYS:
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Set up structlog once for the process. ``fmt`` is auto, json or console; logs go to stderr
    unless ``stream`` is given."""
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
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=True,
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
