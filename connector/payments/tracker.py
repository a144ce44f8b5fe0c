"""Payments: from a local ``payment.requested`` to exactly one outcome on ``portal.payments``.

Three ways in, one way out:

- **Requests** (``connector.payments.requests``): ``payment.requests`` read in a consumer group of its own; each
  request becomes a pending payment in the state store (``PaymentTracker.register``), an invalid one a recorded
  failure on the DLQ. Offsets are committed once their records are registered or recorded.
- **Callback** (``PaymentTracker.notification``): the Payment Platform's result notification on the public
  listener, checked in this order: readable, checksum (constant time), our partner code, a known reference,
  still pending, the amount requested. The reply is the platform's format, signed.
- **Poll** (``PaymentTracker.run``): due pending payments are QUERYed, with exponential backoff and full jitter
  while the platform says pending (or cannot be asked); a payment past its expiry gets one last QUERY and
  is expired unless it says paid or failed.

Whichever path learns the outcome first decides it: ``InboundStore.decide_payment`` settles the pending
payment and writes its outcome message (id ``payment:<reference>``) to the outbox in one transaction, and
does nothing for a payment settled before. Nothing here publishes; the outbox relay does, once.

``run`` should hold the payments lease (``connector.outbox.lease.Lease``) so one instance QUERYs;
the callback may land on any instance.
"""

from __future__ import annotations

import asyncio
import hmac
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import structlog

from connector.config import Settings
from connector.errors import ConfigError
from connector.failures import ConsumedRecord
from connector.national_time import portal_time
from connector.observability import Metrics
from connector.outbox.relay import OutboxRelay, outbox_message
from connector.payments.checksum import NOTIFICATION_FIELDS, REPLY_FIELDS, ChecksumRefused, signed, verify
from connector.payments.messages import (
    EXPIRED,
    MAX_REQUEST_BYTES,
    InvalidPaymentMessage,
    InvalidPaymentRequest,
    PaymentRequest,
    PlatformResult,
    Settlement,
    clean_reference,
    decode_payment_request,
    outcome_document,
    outcome_event_type,
    outcome_message_id,
    parse_notification,
    parse_query_reply,
    settlement_of,
)
from connector.payments.platform import PaymentPlatformClient, PlatformRefused
from connector.portal.errors import PortalUnavailable
from connector.retry import exponential_backoff, wait_any
from connector.store.way_back import InboundStore, PaymentRow
from connector.untrusted import UnreadableBody

log = structlog.get_logger(__name__)

OK, REFUSED = "00", "99"
# What each rejection tells the platform (MoTaLoi); the reason token is the metric label.
REPLY_TEXT: dict[str, str] = {
    "accepted": "accepted",
    "malformed": "the message is not a result notification",
    "forged": "MaXacThuc does not match the message",
    "partner_mismatch": "MaDoiTac is not this partner",
    "unknown_reference": "MaThamChieu is not a payment of this partner",
    "replayed": "this payment's result was recorded before",
    "amount_mismatch": "SoTien or MaTienTe differs from the payment requested",
    "secret_unreadable": "temporarily unable to check the message",
}
DUE_BATCH = 100
# The QUERY call's own timeout is settings.payments.timeout_seconds; this bounds the await around it.
QUERY_TIMEOUT_MARGIN_SECONDS = 5.0

Result = Literal["registered", "duplicate"]



class PaymentTracker:
    """Implements ``connector.listeners.PaymentNotifications``; registers requests; QUERYs pending payments."""

    def __init__(self, settings: Settings, inbound: InboundStore, relay: OutboxRelay, client: PaymentPlatformClient,
                 metrics: Metrics, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 rng: random.Random | None = None) -> None:
        self._settings = settings
        self._payments = settings.payments
        self._topic = settings.kafka.topics.payments
        self._inbound = inbound
        self._relay = relay
        self._client = client
        self._metrics = metrics
        self._clock = clock
        self._random = rng or random.Random()  # noqa: S311 - jitter, not secrecy
        self._wake = asyncio.Event()

    # --- the result notification (public listener) -----------------------------------------------------

    async def notification(self, body: Any) -> dict[str, Any]:
        """The platform-format reply to one result notification; a settled payment's outcome is owed to the
        outbox before "00" is answered."""
        given = body.get("MaThamChieu") if isinstance(body, dict) else None
        reference = clean_reference(given)
        if isinstance(body, UnreadableBody):
            return self._answer("malformed", reference, f"{REPLY_TEXT['malformed']}: {body.message}")
        try:
            note = parse_notification(body)
        except InvalidPaymentMessage as error:
            return self._answer("malformed", reference, f"{REPLY_TEXT['malformed']}: {error}", field=error.field)
        try:
            secret = self._payments.secret_value()
        except ConfigError:
            log.error("payment.notification_secret_unreadable")
            return self._answer("secret_unreadable", reference)
        try:
            verify(body, NOTIFICATION_FIELDS, secret)
        except ChecksumRefused as error:
            return self._answer("forged", reference, field=error.field)
        if not hmac.compare_digest(note.partner_code.encode("utf-8"), self._payments.partner_code.encode("utf-8")):
            return self._answer("partner_mismatch", reference)
        payment = await self._inbound.payment(reference) if reference is not None else None
        if payment is None:
            return self._answer("unknown_reference", reference)
        if payment.state != "pending":
            return self._answer("replayed", reference, dossier_no=payment.dossier_no)
        if not _same_amount(note, payment):
            log.error("payment.amount_mismatch", via="callback", reference=reference, dossier_no=payment.dossier_no)
            return self._answer("amount_mismatch", reference, dossier_no=payment.dossier_no)
        # A notification always settles: MaLoi "00" confirmed, anything else failed.
        settlement = settlement_of(note, "callback") or Settlement("failed", "callback")
        if not await self._decide(payment, settlement):
            return self._answer("replayed", reference, dossier_no=payment.dossier_no)
        return self._answer("accepted", reference, dossier_no=payment.dossier_no, outcome=settlement.outcome)

    def refusal(self, reason: str, message: str, body: Any = None) -> dict[str, Any]:
        """The "99" reply for a call that never reached a verdict (the store away, an unexpected error), naming
        the notification's reference when it is a usable one, so that the platform can match the reply."""
        self._metrics.payment_notifications.labels(reason).inc()
        given = body.get("MaThamChieu") if isinstance(body, dict) else None
        return self._reply(REFUSED, message, clean_reference(given) or "")

    def _answer(self, result: str, reference: str | None, description: str | None = None, *,
                field: str | None = None, dossier_no: str | None = None, outcome: str | None = None) -> dict[str, Any]:
        self._metrics.payment_notifications.labels(result).inc()
        accepted = result == "accepted"
        # No checksum, no amount, no free text of the message: the reference and dossier number identify it.
        # A replay is the platform retrying (ordinary); any other refusal is worth an operator's look.
        (log.info if result in ("accepted", "replayed") else log.warning)(
            "payment.notification", result=result, reference=reference, dossier_no=dossier_no, field=field,
            outcome=outcome)
        return self._reply(OK if accepted else REFUSED, description or REPLY_TEXT[result], reference or "")

    def _reply(self, code: str, description: str, reference: str) -> dict[str, Any]:
        reply = {"MaLoi": code, "MoTaLoi": description, "MaDoiTac": self._payments.partner_code,
                 "MaThamChieu": reference, "ThoiGianGD": portal_time(self._clock())}
        try:
            secret = self._payments.secret_value()
        except ConfigError:
            return {**reply, "MaXacThuc": ""}
        return signed(reply, REPLY_FIELDS, secret)

    # --- requests ----------------------------------------------------------------------------------------

    async def register(self, record: ConsumedRecord) -> Result:
        """Watch the payment one ``payment.requests`` record asks for. A request delivered again changes
        nothing ("duplicate"); ``InvalidPaymentRequest`` for a record that cannot be used, including a
        reference already held for another dossier or amount (reason ``reference_conflict``)."""
        request = decode_payment_request(record.key, record.value,
                                         max_bytes=min(MAX_REQUEST_BYTES, self._settings.kafka.max_event_bytes))
        row = self._pending_row(request)
        held = await self._inbound.register_payment(row, self._clock())
        if held is None:
            self._wake.set()
            log.info("payment.registered", reference=row.reference, dossier_no=row.dossier_no)
            return "registered"
        if (held.dossier_no, held.amount, held.currency) != (row.dossier_no, row.amount, row.currency):
            raise InvalidPaymentRequest("the reference is already held by a payment of another dossier or amount",
                                        reason="reference_conflict", field="payment.reference")
        return "duplicate"

    def _pending_row(self, request: PaymentRequest) -> PaymentRow:
        p = self._payments
        expires_at = request.expires_at or request.requested_at + timedelta(seconds=p.expiry_seconds)
        first_query = min(request.requested_at + timedelta(seconds=p.query_initial_seconds), expires_at)
        return PaymentRow(reference=request.reference, dossier_no=request.dossier_no, amount=request.amount,
                          currency=request.currency, requested_at=request.requested_at, expires_at=expires_at,
                          event_id=request.event_id, state="pending", next_query_at=first_query, queries=0,
                          last_query_result=None, decided_at=None, decided_by=None)

    # --- polling -------------------------------------------------------------------------------------------

    def wake(self) -> None:
        """Look for due payments now."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: QUERY the due pending payments, expire the ones past their time; look again every
        ``scan_interval_seconds``, sooner when the next one is due sooner or when woken."""
        scan = self._payments.scan_interval_seconds
        while not stop.is_set():
            self._wake.clear()
            delay = scan
            try:
                await self.query_due(stop)
                next_due = await self._inbound.next_due()
                if next_due is not None:
                    delay = min(scan, max((next_due - self._clock()).total_seconds(), self._min_gap()))
            except Exception as error:  # noqa: BLE001 - the store away: the payments wait, nothing is lost
                log.warning("payment.scan_failed", error=type(error).__name__, reason=getattr(error, "reason", None))
            await wait_any(stop, self._wake, seconds=delay)

    async def query_due(self, stop: asyncio.Event | None = None) -> int:
        """One pass over the payments due now (bounded concurrency); returns how many were looked at."""
        now = self._clock()
        slots = asyncio.Semaphore(self._payments.max_concurrent_queries)
        seen: set[str] = set()

        async def one(payment: PaymentRow) -> bool:
            async with slots:
                if stop is not None and stop.is_set():
                    return False
                try:
                    await self.check(payment, now)
                    return True
                except Exception as error:  # noqa: BLE001 - this payment waits for the next pass
                    log.warning("payment.check_failed", reference=payment.reference, error=type(error).__name__,
                                reason=getattr(error, "reason", None))
                    return False

        while stop is None or not stop.is_set():
            due = [p for p in await self._inbound.due_payments(now, limit=DUE_BATCH) if p.reference not in seen]
            if not due:
                break
            seen.update(p.reference for p in due)
            done = await asyncio.gather(*(one(p) for p in due))
            # A payment that could not be handled stays due; the next pass (not this one) tries it again.
            if not all(done) or len(due) < DUE_BATCH:
                break
        return len(seen)

    async def check(self, payment: PaymentRow, now: datetime) -> str:
        """QUERY one pending payment and act on the answer; returns the result counted."""
        expiring = now >= payment.expires_at
        try:
            answer = await self._query(payment.reference, now)
        except PortalUnavailable as error:
            # No answer: not even an expiry is decided without one.
            return await self._again(payment, now, error.reason)
        except (PlatformRefused, InvalidPaymentMessage) as error:
            if expiring:
                self._metrics.payment_queries.labels(error.reason).inc()
                await self._decide(payment, EXPIRED)
                return error.reason
            return await self._again(payment, now, error.reason)
        settlement = settlement_of(answer, "query")
        if settlement is not None and settlement.outcome == "confirmed" and not _same_amount(answer, payment):
            log.error("payment.amount_mismatch", via="query", reference=payment.reference,
                      dossier_no=payment.dossier_no)
            return await self._again(payment, now, "amount_mismatch")
        if settlement is None:
            if not expiring:
                return await self._again(payment, now, "pending")
            settlement = EXPIRED
        # At expiry a pending answer is counted as what it was: pending (the outcome metric says expired).
        result = {"confirmed": "paid", "failed": "failed", "expired": "pending"}[settlement.outcome]
        self._metrics.payment_queries.labels(result).inc()
        await self._decide(payment, settlement)
        return result

    async def _query(self, reference: str, now: datetime) -> PlatformResult:
        try:
            reply = await asyncio.wait_for(self._client.query(reference, now),
                                           self._payments.timeout_seconds + QUERY_TIMEOUT_MARGIN_SECONDS)
        except TimeoutError:
            raise PortalUnavailable("Payment Platform: no answer in time", reason="timeout") from None
        answer = parse_query_reply(reply)
        if answer.partner_code and answer.partner_code != self._payments.partner_code:
            raise InvalidPaymentMessage("is not this partner", reason="partner_mismatch", field="MaDoiTac")
        return answer

    async def _again(self, payment: PaymentRow, now: datetime, result: str) -> str:
        self._metrics.payment_queries.labels(result).inc()
        next_at = now + timedelta(seconds=self.backoff(payment.queries))
        if now < payment.expires_at:
            next_at = min(next_at, payment.expires_at)  # the expiry is looked at on time
        await self._inbound.reschedule_query(payment.reference, next_at=next_at, result=result)
        log.debug("payment.query_again", reference=payment.reference, result=result,
                  seconds=round((next_at - now).total_seconds(), 3))
        return result

    def backoff(self, queries: int) -> float:
        """Seconds before the next QUERY after ``queries`` earlier ones: full jitter under a cap that starts
        at ``query_initial_seconds`` and doubles up to ``query_max_seconds``; never sooner than
        ``_min_gap`` (a jitter of nearly nothing must not turn into a busy loop)."""
        p = self._payments
        wait = exponential_backoff(queries, initial=p.query_initial_seconds, cap=p.query_max_seconds, rng=self._random)
        return max(wait, self._min_gap())

    def _min_gap(self) -> float:
        return min(self._payments.query_initial_seconds, 1.0)

    # --- the one decision ----------------------------------------------------------------------------------

    async def _decide(self, payment: PaymentRow, settlement: Settlement) -> bool:
        """Settle ``payment`` and owe its outcome message, unless it was settled before (False)."""
        decided_at = self._clock()
        document = outcome_document(reference=payment.reference, dossier_no=payment.dossier_no,
                                    amount=payment.amount, currency=payment.currency,
                                    requested_at=payment.requested_at, settlement=settlement, occurred_at=decided_at)
        event_type = outcome_event_type(settlement.outcome)
        message = outbox_message(outcome_message_id(payment.reference), self._topic, payment.dossier_no, document,
                                 event_type=event_type, now=decided_at)
        decided = await self._inbound.decide_payment(payment.reference, settlement.outcome, by=settlement.learnt_via,
                                                     message=message, now=decided_at)
        if decided:
            self._metrics.payment_outcomes.labels(settlement.outcome, settlement.learnt_via).inc()
            log.info("payment.decided", reference=payment.reference, dossier_no=payment.dossier_no,
                     outcome=settlement.outcome, via=settlement.learnt_via)
            self._relay.wake()
        else:
            log.info("payment.decided_before", reference=payment.reference, via=settlement.learnt_via)
        return decided


def _same_amount(result: PlatformResult, payment: PaymentRow) -> bool:
    """The platform's SoTien is the amount requested (and MaTienTe, when given, its currency)."""
    return result.amount == payment.amount and (not result.currency or result.currency == payment.currency)



__all__ = ["PaymentTracker"]
