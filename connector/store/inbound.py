"""The state store's side of the way back: the outbox, submission revisions, poll cursors, payments.

Every decision to publish something (a new submission revision, a payment's outcome) is written in one
transaction with the outbox message that carries it, and the key of the decision is the message's id. A
second decision about the same thing finds the first one and publishes nothing: that is what makes the
way back exactly-once into Kafka without an idempotent producer or transactions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from connector.store.state import StateStore, _fitted, _store_errors, kafka_headers, stored_headers, stored_utc
from connector.store.tables import leases, outbox, payments, pull_cursors, submissions

Header = tuple[str, bytes | None]


@dataclass(frozen=True)
class OutboxMessage:
    """A record owed to a topic; ``message_id`` also travels as the record's ``message-id`` header."""

    message_id: str
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[Header, ...]
    value_sha256: str
    created_at: datetime


class Published(NamedTuple):
    message_id: str
    partition: int
    offset: int


SUBMISSION_STATES = ("accepted", "acknowledged", "rejected")


class SubmissionKey(NamedTuple):
    dossier_no: str
    revision: int


@dataclass(frozen=True)
class SubmissionRow:
    dossier_no: str
    revision: int
    state: str
    received_via: str
    agency_code: str | None
    message_id: str | None
    published: bool  # its outbox message is on the topic
    reason: str | None
    field: str | None
    message: str | None
    attempts: int
    first_seen_at: datetime
    updated_at: datetime


PAYMENT_STATES = ("pending", "confirmed", "failed", "expired")


@dataclass(frozen=True)
class PaymentRow:
    reference: str
    dossier_no: str
    amount: int
    currency: str
    requested_at: datetime
    expires_at: datetime
    event_id: str
    state: str
    next_query_at: datetime | None
    queries: int
    last_query_result: str | None
    decided_at: datetime | None
    decided_by: str | None


def _outbox_row(message: OutboxMessage) -> dict[str, Any]:
    return {"message_id": message.message_id, "topic": message.topic, "record_key": message.key,
            "record_value": message.value, "record_headers": stored_headers(message.headers),
            "value_sha256": message.value_sha256, "created_at": message.created_at}


def _payment(row: Any) -> PaymentRow:
    return PaymentRow(row.reference, row.dossier_no, row.amount, row.currency, _utc(row.requested_at),
                      _utc(row.expires_at), row.event_id, row.state, stored_utc(row.next_query_at), row.queries,
                      row.last_query_result, stored_utc(row.decided_at), row.decided_by)


def _utc(moment: datetime) -> datetime:
    value = stored_utc(moment)
    assert value is not None
    return value


class InboundStore:
    """The way back's tables, through the state store's engine (and its error rule: a database that cannot
    be reached raises ``StoreUnavailable``)."""

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self._engine = store.engine
        self._insert = store._insert

    # --- the outbox ----------------------------------------------------------------------------------

    async def unpublished(self, *, limit: int = 200, topic: str | None = None) -> list[OutboxMessage]:
        """The oldest messages not yet marked published."""
        c = outbox.c
        query = select(c.message_id, c.topic, c.record_key, c.record_value, c.record_headers, c.value_sha256,
                       c.created_at).where(c.published_at.is_(None))
        if topic is not None:
            query = query.where(c.topic == topic)
        query = query.order_by(c.created_at, c.message_id).limit(limit)
        async with _store_errors(), self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [OutboxMessage(r.message_id, r.topic, r.record_key, r.record_value or b"",
                              tuple(kafka_headers(r.record_headers)), r.value_sha256, _utc(r.created_at))
                for r in rows]

    async def mark_published(self, published: Sequence[Published], now: datetime) -> None:
        """The broker holds these: forget their bodies, keep where they went."""
        if not published:
            return
        statement = update(outbox).where(outbox.c.message_id == bindparam("id")).values(
            published_at=now, partition=bindparam("at_partition"), offset=bindparam("at_offset"), record_value=None)
        async with _store_errors(), self._engine.begin() as conn:
            await conn.execute(statement, [{"id": p.message_id, "at_partition": p.partition, "at_offset": p.offset}
                                           for p in published])

    async def outbox_backlog(self) -> int:
        async with _store_errors(), self._engine.connect() as conn:
            count = await conn.scalar(select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None)))
        return int(count or 0)

    async def is_published(self, message_id: str) -> bool | None:
        """True once on the topic, False while owed, None when there is no such message."""
        async with _store_errors(), self._engine.connect() as conn:
            row = (await conn.execute(select(outbox.c.published_at).where(outbox.c.message_id == message_id))).first()
        return None if row is None else row.published_at is not None

    # --- submissions ----------------------------------------------------------------------------------

    async def submission_states(self, keys: Sequence[SubmissionKey]) -> dict[SubmissionKey, SubmissionRow]:
        """What is known of each revision asked about (absent: never met)."""
        found: dict[SubmissionKey, SubmissionRow] = {}
        async with _store_errors(), self._engine.connect() as conn:
            for start in range(0, len(keys), 200):
                chunk = keys[start:start + 200]
                nos = sorted({k.dossier_no for k in chunk})
                rows = (await conn.execute(self._submission_query().where(submissions.c.dossier_no.in_(nos)))).all()
                wanted = set(chunk)
                for row in rows:
                    key = SubmissionKey(row.dossier_no, row.revision)
                    if key in wanted:
                        found[key] = _submission(row)
        return found

    async def submissions_list(self, *, state: str | None = None, dossier_no: str | None = None,
                               limit: int = 100) -> list[SubmissionRow]:
        query = self._submission_query()
        if state is not None:
            query = query.where(submissions.c.state == state)
        if dossier_no is not None:
            query = query.where(submissions.c.dossier_no == dossier_no)
        query = query.order_by(submissions.c.updated_at.desc()).limit(limit)
        async with _store_errors(), self._engine.connect() as conn:
            return [_submission(row) for row in (await conn.execute(query)).all()]

    @staticmethod
    def _submission_query() -> Any:
        s, o = submissions.c, outbox.c
        return select(s.dossier_no, s.revision, s.state, s.received_via, s.agency_code, s.message_id, s.reason,
                      s.field, s.message, s.attempts, s.first_seen_at, s.updated_at,
                      o.published_at).select_from(
            submissions.outerjoin(outbox, o.message_id == s.message_id))

    async def accept_submission(self, key: SubmissionKey, *, received_via: str, agency_code: str | None,
                                submitted_at: datetime | None, message: OutboxMessage, now: datetime) -> bool:
        """Record the revision as accepted with the message that publishes it; False (and nothing written)
        when it was accepted before. A revision rejected before is accepted now (it was fixed or re-sent)."""
        row = _fitted(submissions, {
            "dossier_no": key.dossier_no, "revision": key.revision, "state": "accepted",
            "received_via": received_via, "agency_code": agency_code, "submitted_at": submitted_at,
            "message_id": message.message_id, "first_seen_at": now, "updated_at": now, "attempts": 1})
        async with _store_errors(), self._engine.begin() as conn:
            taken = await self._claim(conn, key, row)
            if not taken:
                return False
            inserted = await conn.execute(
                self._insert(outbox).values(_outbox_row(message)).on_conflict_do_nothing(
                    index_elements=["message_id"]))
            return inserted.rowcount == 1

    async def _claim(self, conn: AsyncConnection, key: SubmissionKey, row: dict[str, Any]) -> bool:
        s = submissions.c
        inserted = await conn.execute(
            self._insert(submissions).values(row).on_conflict_do_nothing(index_elements=["dossier_no", "revision"]))
        if inserted.rowcount == 1:
            return True
        # Met before: only a rejected revision may be accepted now.
        changed = await conn.execute(update(submissions).where(
            and_(s.dossier_no == key.dossier_no, s.revision == key.revision, s.state == "rejected")).values(
            state="accepted", received_via=row["received_via"], message_id=row["message_id"],
            updated_at=row["updated_at"], reason=None, field=None, message=None,
            attempts=s.attempts + 1))
        return changed.rowcount == 1

    async def reject_submission(self, key: SubmissionKey, *, received_via: str, agency_code: str | None,
                                reason: str, field: str | None, message: str, now: datetime) -> None:
        """Record why the revision cannot be published (unless it was accepted meanwhile)."""
        s = submissions.c
        row = _fitted(submissions, {
            "dossier_no": key.dossier_no, "revision": key.revision, "state": "rejected",
            "received_via": received_via, "agency_code": agency_code, "first_seen_at": now, "updated_at": now,
            "reason": reason, "field": field, "message": message, "attempts": 1})
        async with _store_errors(), self._engine.begin() as conn:
            inserted = await conn.execute(self._insert(submissions).values(row).on_conflict_do_nothing(
                index_elements=["dossier_no", "revision"]))
            if inserted.rowcount == 0:
                await conn.execute(update(submissions).where(and_(
                    s.dossier_no == key.dossier_no, s.revision == key.revision, s.state == "rejected")).values(
                    updated_at=now, reason=row["reason"], field=row["field"], message=row["message"],
                    attempts=s.attempts + 1))

    async def unacknowledged(self, *, limit: int = 500) -> list[SubmissionRow]:
        """Polled revisions the broker holds that the portal has not been told about yet."""
        query = self._submission_query().where(and_(
            submissions.c.state == "accepted", submissions.c.received_via == "poll",
            outbox.c.published_at.is_not(None))).order_by(submissions.c.first_seen_at).limit(limit)
        async with _store_errors(), self._engine.connect() as conn:
            return [_submission(row) for row in (await conn.execute(query)).all()]

    async def mark_acknowledged(self, keys: Sequence[SubmissionKey], now: datetime) -> None:
        s = submissions.c
        async with _store_errors(), self._engine.begin() as conn:
            for key in keys:
                await conn.execute(update(submissions).where(and_(
                    s.dossier_no == key.dossier_no, s.revision == key.revision, s.state == "accepted")).values(
                    state="acknowledged", acknowledged_at=now, updated_at=now))

    async def submission_counts(self) -> dict[str, int]:
        async with _store_errors(), self._engine.connect() as conn:
            rows = (await conn.execute(select(submissions.c.state, func.count()).group_by(submissions.c.state))).all()
        return {state: int(count) for state, count in rows}

    # --- cursors --------------------------------------------------------------------------------------

    async def cursor(self, name: str) -> str | None:
        async with _store_errors(), self._engine.connect() as conn:
            value = await conn.scalar(select(pull_cursors.c.position).where(pull_cursors.c.name == name))
        return None if value is None else str(value)

    async def set_cursor(self, name: str, position: str, now: datetime) -> None:
        async with _store_errors(), self._engine.begin() as conn:
            changed = await conn.execute(update(pull_cursors).where(pull_cursors.c.name == name).values(
                position=position, updated_at=now))
            if changed.rowcount == 0:
                await conn.execute(insert(pull_cursors).values(name=name, position=position, updated_at=now))

    # --- payments -------------------------------------------------------------------------------------

    async def register_payment(self, row: PaymentRow, now: datetime) -> PaymentRow | None:
        """Watch a requested payment; return the row already held for its reference, if any (a request
        delivered again finds it, and changes nothing)."""
        values = _fitted(payments, {
            "reference": row.reference, "dossier_no": row.dossier_no, "amount": row.amount,
            "currency": row.currency, "requested_at": row.requested_at, "expires_at": row.expires_at,
            "event_id": row.event_id, "state": "pending", "next_query_at": row.next_query_at, "queries": 0,
            "created_at": now})
        async with _store_errors(), self._engine.begin() as conn:
            inserted = await conn.execute(self._insert(payments).values(values).on_conflict_do_nothing(
                index_elements=["reference"]))
            if inserted.rowcount == 1:
                return None
            existing = (await conn.execute(select(payments).where(payments.c.reference == row.reference))).first()
        return None if existing is None else _payment(existing)

    async def payment(self, reference: str) -> PaymentRow | None:
        async with _store_errors(), self._engine.connect() as conn:
            row = (await conn.execute(select(payments).where(payments.c.reference == reference))).first()
        return None if row is None else _payment(row)

    async def due_payments(self, now: datetime, *, limit: int = 100) -> list[PaymentRow]:
        """Pending payments whose next QUERY (or expiry) is due."""
        c = payments.c
        query = select(payments).where(and_(c.state == "pending", c.next_query_at <= now)).order_by(
            c.next_query_at).limit(limit)
        async with _store_errors(), self._engine.connect() as conn:
            return [_payment(row) for row in (await conn.execute(query)).all()]

    async def next_due(self) -> datetime | None:
        c = payments.c
        async with _store_errors(), self._engine.connect() as conn:
            value = await conn.scalar(select(func.min(c.next_query_at)).where(c.state == "pending"))
        return stored_utc(value)

    async def decide_payment(self, reference: str, outcome: str, *, by: str, message: OutboxMessage,
                             now: datetime) -> bool:
        """Settle a pending payment and owe its outcome message, in one transaction; False when it was
        settled before (by the other path, or an earlier call): nothing is written then."""
        c = payments.c
        async with _store_errors(), self._engine.begin() as conn:
            changed = await conn.execute(update(payments).where(and_(
                c.reference == reference, c.state == "pending")).values(
                state=outcome, decided_at=now, decided_by=by, next_query_at=None))
            if changed.rowcount != 1:
                return False
            await conn.execute(insert(outbox).values(_outbox_row(message)))
        return True

    async def reschedule_query(self, reference: str, *, next_at: datetime, result: str) -> None:
        c = payments.c
        async with _store_errors(), self._engine.begin() as conn:
            await conn.execute(update(payments).where(and_(c.reference == reference, c.state == "pending")).values(
                next_query_at=next_at, queries=c.queries + 1, last_query_result=result[:100]))

    async def payments_list(self, *, state: str | None = None, dossier_no: str | None = None,
                            limit: int = 100) -> list[PaymentRow]:
        query = select(payments)
        if state is not None:
            query = query.where(payments.c.state == state)
        if dossier_no is not None:
            query = query.where(payments.c.dossier_no == dossier_no)
        query = query.order_by(payments.c.requested_at.desc()).limit(limit)
        async with _store_errors(), self._engine.connect() as conn:
            return [_payment(row) for row in (await conn.execute(query)).all()]

    async def payment_counts(self) -> dict[str, int]:
        async with _store_errors(), self._engine.connect() as conn:
            rows = (await conn.execute(select(payments.c.state, func.count()).group_by(payments.c.state))).all()
        return {state: int(count) for state, count in rows}

    # --- leases ---------------------------------------------------------------------------------------

    async def take_lease(self, name: str, holder: str, *, now: datetime, until: datetime) -> bool:
        """Hold ``name`` until ``until`` if it is free, lapsed, or already ours; True when we hold it."""
        c = leases.c
        async with _store_errors(), self._engine.begin() as conn:
            changed = await conn.execute(update(leases).where(and_(
                c.name == name, or_(c.holder == holder, c.expires_at < now))).values(holder=holder, expires_at=until))
            if changed.rowcount == 1:
                return True
            inserted = await conn.execute(self._insert(leases).values(
                name=name, holder=holder, expires_at=until).on_conflict_do_nothing(index_elements=["name"]))
            return inserted.rowcount == 1

    async def release_lease(self, name: str, holder: str) -> None:
        async with _store_errors(), self._engine.begin() as conn:
            await conn.execute(delete(leases).where(and_(leases.c.name == name, leases.c.holder == holder)))


def _submission(row: Any) -> SubmissionRow:
    return SubmissionRow(row.dossier_no, row.revision, row.state, row.received_via, row.agency_code,
                         row.message_id, row.published_at is not None, row.reason, row.field, row.message,
                         row.attempts, _utc(row.first_seen_at), _utc(row.updated_at))


__all__ = ["PAYMENT_STATES", "SUBMISSION_STATES", "InboundStore", "OutboxMessage", "PaymentRow", "Published",
           "SubmissionKey", "SubmissionRow"]
