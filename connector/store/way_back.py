"""The state store's side of the way back: the outbox, submission revisions, poll cursors, payments.

Every decision to publish something (a new submission revision, a payment's outcome) is written in one
transaction with the outbox message that carries it, and the key of the decision is the message's id. A
second decision about the same thing finds the first one and publishes nothing: that is what makes the
way back exactly-once into Kafka without an idempotent producer or transactions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple, TypeVar

from sqlalchemy import Table, and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from connector.store.engine import fitted, kafka_headers, store_errors, stored_headers, stored_utc
from connector.store.ledger import StateStore
from connector.store.tables import leases, outbox, payments, pull_cursors, submission_conflicts, submissions

T = TypeVar("T")

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


SUBMISSION_STATES = ("accepted", "acknowledged", "rejected", "conflict")
CONFLICT_OUTCOMES = ("settled_portal", "unsettled")  # None: open, the portal not asked yet (or not answering)


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
    content_sha256: str | None = None  # what the citizen submitted (None in rows written before revision 0004)
    confirmed_at: datetime | None = None  # when the portal's own record stood behind it


MetBefore = Literal["duplicate", "conflict", "conflict_known", "refused", "refused_known", "absent"]
"""What another body for an accepted revision is: the same content (``duplicate``), a new conflicting body
(``conflict``), one kept before (``conflict_known``), one that differs from content the portal confirmed
(``refused``, kept as settled at once; ``refused_known`` when kept before), or there is no accepted revision
to compare with (``absent``)."""


@dataclass(frozen=True)
class ConflictRow:
    """A body met for an accepted revision that differs from it. No personal data: digests and rules."""

    id: int
    dossier_no: str
    revision: int
    first_sha256: str | None  # the revision's content when the conflict was met
    conflicting_sha256: str
    received_via: str
    detected_at: datetime
    outcome: str | None  # None while open; settled_portal / unsettled
    portal_sha256: str | None
    note: str | None
    settled_at: datetime | None


@dataclass(frozen=True)
class OpenConflict:
    """A revision with conflicts the portal has not settled: what it holds now, and whether its message is
    withheld (still owed, so the portal's record can take its place) or may be on the topic already."""

    key: SubmissionKey
    content_sha256: str | None
    message_id: str | None
    withheld: bool


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
        async with store_errors(), self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [OutboxMessage(r.message_id, r.topic, r.record_key, r.record_value or b"",
                              tuple(kafka_headers(r.record_headers)), r.value_sha256, _utc(r.created_at))
                for r in rows]

    async def claim_owed(self, *, limit: int, now: datetime) -> list[OutboxMessage]:
        """The oldest owed messages that are not withheld, marked as taken to send: from then on a conflict
        can no longer withhold them (they may be on the topic). A message claimed before and never marked
        published (a send that failed) is owed still, and claimed again."""
        c = outbox.c
        sendable = and_(c.published_at.is_(None), c.held.is_(False))
        order = (c.created_at, c.message_id)
        async with store_errors(), self._engine.begin() as conn:
            ids = list((await conn.scalars(select(c.message_id).where(sendable).order_by(*order).limit(limit))).all())
            if not ids:
                return []
            await conn.execute(update(outbox).where(and_(c.message_id.in_(ids), sendable)).values(claimed_at=now))
            rows = (await conn.execute(select(
                c.message_id, c.topic, c.record_key, c.record_value, c.record_headers, c.value_sha256,
                c.created_at).where(and_(c.message_id.in_(ids), sendable)).order_by(*order))).all()
        return [OutboxMessage(r.message_id, r.topic, r.record_key, r.record_value or b"",
                              tuple(kafka_headers(r.record_headers)), r.value_sha256, _utc(r.created_at))
                for r in rows]

    async def mark_published(self, published: Sequence[Published], now: datetime) -> None:
        """The broker holds these: forget their bodies, keep where they went."""
        if not published:
            return
        statement = update(outbox).where(outbox.c.message_id == bindparam("id")).values(
            published_at=now, partition=bindparam("at_partition"), offset=bindparam("at_offset"), record_value=None)
        async with store_errors(), self._engine.begin() as conn:
            await conn.execute(statement, [{"id": p.message_id, "at_partition": p.partition, "at_offset": p.offset}
                                           for p in published])

    async def outbox_backlog(self) -> int:
        async with store_errors(), self._engine.connect() as conn:
            count = await conn.scalar(select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None)))
        return int(count or 0)

    async def is_published(self, message_id: str) -> bool | None:
        """True once on the topic, False while owed, None when there is no such message."""
        async with store_errors(), self._engine.connect() as conn:
            row = (await conn.execute(select(outbox.c.published_at).where(outbox.c.message_id == message_id))).first()
        return None if row is None else row.published_at is not None

    # --- submissions ----------------------------------------------------------------------------------

    async def submission_states(self, keys: Sequence[SubmissionKey]) -> dict[SubmissionKey, SubmissionRow]:
        """What is known of each revision asked about (absent: never met)."""
        found: dict[SubmissionKey, SubmissionRow] = {}
        async with store_errors(), self._engine.connect() as conn:
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
        return await self._newest_first(self._submission_query(), submissions, submissions.c.updated_at, _submission,
                                        state=state, dossier_no=dossier_no, limit=limit)

    async def _newest_first(self, query: Any, table: Table, newest: Any, row_of: Callable[[Any], T], *,
                            state: str | None, dossier_no: str | None, limit: int) -> list[T]:
        """An operator's listing: ``query`` narrowed to a state and a dossier when given, newest first."""
        for column, wanted in (("state", state), ("dossier_no", dossier_no)):
            if wanted is not None:
                query = query.where(table.c[column] == wanted)
        async with store_errors(), self._engine.connect() as conn:
            return [row_of(row) for row in (await conn.execute(query.order_by(newest.desc()).limit(limit))).all()]

    @staticmethod
    def _submission_query() -> Any:
        s, o = submissions.c, outbox.c
        return select(s.dossier_no, s.revision, s.state, s.received_via, s.agency_code, s.message_id, s.reason,
                      s.field, s.message, s.attempts, s.first_seen_at, s.updated_at, s.content_sha256,
                      s.confirmed_at, o.published_at).select_from(
            submissions.outerjoin(outbox, o.message_id == s.message_id))

    async def accept_submission(self, key: SubmissionKey, *, received_via: str, agency_code: str | None,
                                submitted_at: datetime | None, message: OutboxMessage, now: datetime,
                                content_sha256: str | None = None, confirmed: bool = False) -> bool:
        """Record the revision as accepted with the message that publishes it; False (and nothing written)
        when it was accepted before. A revision rejected before is accepted now (it was fixed or re-sent).
        ``content_sha256`` is what later bodies of the revision are compared with; ``confirmed``: the content
        is the portal's own record (a poll)."""
        row = fitted(submissions, {
            "dossier_no": key.dossier_no, "revision": key.revision, "state": "accepted",
            "received_via": received_via, "agency_code": agency_code, "submitted_at": submitted_at,
            "message_id": message.message_id, "first_seen_at": now, "updated_at": now, "attempts": 1,
            "content_sha256": content_sha256, "confirmed_at": now if confirmed else None})
        async with store_errors(), self._engine.begin() as conn:
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
            content_sha256=row["content_sha256"], confirmed_at=row["confirmed_at"], attempts=s.attempts + 1))
        return changed.rowcount == 1

    async def reject_submission(self, key: SubmissionKey, *, received_via: str, agency_code: str | None,
                                reason: str, field: str | None, message: str, now: datetime) -> None:
        """Record why the revision cannot be published (unless it was accepted meanwhile)."""
        s = submissions.c
        row = fitted(submissions, {
            "dossier_no": key.dossier_no, "revision": key.revision, "state": "rejected",
            "received_via": received_via, "agency_code": agency_code, "first_seen_at": now, "updated_at": now,
            "reason": reason, "field": field, "message": message, "attempts": 1})
        async with store_errors(), self._engine.begin() as conn:
            inserted = await conn.execute(self._insert(submissions).values(row).on_conflict_do_nothing(
                index_elements=["dossier_no", "revision"]))
            if inserted.rowcount == 0:
                await conn.execute(update(submissions).where(and_(
                    s.dossier_no == key.dossier_no, s.revision == key.revision, s.state == "rejected")).values(
                    updated_at=now, reason=row["reason"], field=row["field"], message=row["message"],
                    attempts=s.attempts + 1))

    async def unacknowledged(self, *, limit: int = 500) -> list[SubmissionRow]:
        """Revisions the broker holds that the portal has not been told about yet, polled or pushed (one in
        conflict waits for the portal's settlement)."""
        query = self._submission_query().where(and_(
            submissions.c.state == "accepted", outbox.c.published_at.is_not(None))).order_by(
            submissions.c.first_seen_at).limit(limit)
        async with store_errors(), self._engine.connect() as conn:
            return [_submission(row) for row in (await conn.execute(query)).all()]

    async def mark_acknowledged(self, keys: Sequence[SubmissionKey], now: datetime) -> None:
        s = submissions.c
        async with store_errors(), self._engine.begin() as conn:
            for key in keys:
                await conn.execute(update(submissions).where(and_(
                    s.dossier_no == key.dossier_no, s.revision == key.revision, s.state == "accepted")).values(
                    state="acknowledged", acknowledged_at=now, updated_at=now))

    async def submission_counts(self) -> dict[str, int]:
        async with store_errors(), self._engine.connect() as conn:
            rows = (await conn.execute(select(submissions.c.state, func.count()).group_by(submissions.c.state))).all()
        return {state: int(count) for state, count in rows}

    # --- conflicts ------------------------------------------------------------------------------------

    async def record_conflict(self, key: SubmissionKey, *, content_sha256: str, received_via: str,
                              national_json: str | None, now: datetime) -> MetBefore:
        """Another body for an accepted revision. The same content is a ``duplicate``. Another one is kept,
        and the revision goes to state ``conflict``: its message, if the relay has not taken it yet, is
        withheld, and it is not acknowledged until the portal settles it. When the portal confirmed the
        revision's content before, the body is ``refused`` (kept, settled at once)."""
        s, c = submissions.c, submission_conflicts.c
        async with store_errors(), self._engine.begin() as conn:
            current = (await conn.execute(
                select(s.state, s.content_sha256, s.confirmed_at, s.message_id).where(and_(
                    s.dossier_no == key.dossier_no, s.revision == key.revision)).with_for_update())).first()
            if current is None or current.state == "rejected":
                return "absent"
            if current.content_sha256 is None or current.content_sha256 == content_sha256:
                return "duplicate"  # the same content (or a row from before digests: nothing to compare)
            confirmed = current.confirmed_at is not None and current.state != "conflict"
            row = fitted(submission_conflicts, {
                "dossier_no": key.dossier_no, "revision": key.revision, "content_sha256": content_sha256,
                "first_sha256": current.content_sha256, "received_via": received_via,
                "national_json": national_json, "detected_at": now})
            if confirmed:
                row.update(outcome="settled_portal", portal_sha256=current.content_sha256, settled_at=now,
                           note="refused at once: the portal confirmed the content of this revision before")
            inserted = await conn.execute(self._insert(submission_conflicts).values(row).on_conflict_do_nothing(
                index_elements=["dossier_no", "revision", "content_sha256"]))
            if confirmed:
                return "refused"
            if inserted.rowcount == 0:
                kept = await conn.scalar(select(c.outcome).where(and_(
                    c.dossier_no == key.dossier_no, c.revision == key.revision, c.content_sha256 == content_sha256)))
                return "refused_known" if kept == "settled_portal" else "conflict_known"
            await conn.execute(update(submissions).where(and_(
                s.dossier_no == key.dossier_no, s.revision == key.revision)).values(state="conflict", updated_at=now))
            if current.message_id is not None:
                o = outbox.c
                await conn.execute(update(outbox).where(and_(
                    o.message_id == current.message_id, o.published_at.is_(None), o.claimed_at.is_(None))).values(
                    held=True))
            return "conflict"

    async def open_conflicts(self, *, limit: int = 100) -> list[OpenConflict]:
        """Revisions with a conflict the portal has not settled yet, oldest first."""
        s, c, o = submissions.c, submission_conflicts.c, outbox.c
        waiting = select(c.dossier_no, c.revision, func.min(c.detected_at).label("since")).where(
            c.outcome.is_(None)).group_by(c.dossier_no, c.revision).subquery()
        query = select(s.dossier_no, s.revision, s.content_sha256, s.message_id, o.held).select_from(
            waiting.join(submissions, and_(s.dossier_no == waiting.c.dossier_no, s.revision == waiting.c.revision))
            .outerjoin(outbox, o.message_id == s.message_id)).order_by(waiting.c.since).limit(limit)
        async with store_errors(), self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [OpenConflict(SubmissionKey(r.dossier_no, r.revision), r.content_sha256, r.message_id, bool(r.held))
                for r in rows]

    async def settle_conflict(self, key: SubmissionKey, *, portal_sha256: str, note: str, now: datetime,
                              replacement: OutboxMessage | None = None) -> bool:
        """The portal's record settles the revision's conflicts: it is the content the revision holds
        (``replacement`` None: its message, withheld or not, goes on as it is), or ``replacement`` is the
        portal's record taking the place of a withheld message. False (nothing changed) when the withheld
        message is no longer there to replace."""
        s, c, o = submissions.c, submission_conflicts.c, outbox.c
        async with store_errors(), self._engine.begin() as conn:
            message_id = await conn.scalar(select(s.message_id).where(and_(
                s.dossier_no == key.dossier_no, s.revision == key.revision, s.state == "conflict")).with_for_update())
            if message_id is None:
                return False
            if replacement is not None:
                if replacement.message_id != message_id:
                    return False
                replaced = await conn.execute(update(outbox).where(and_(
                    o.message_id == message_id, o.held.is_(True), o.published_at.is_(None))).values(
                    held=False, claimed_at=None, topic=replacement.topic, record_key=replacement.key,
                    record_value=replacement.value, record_headers=stored_headers(replacement.headers),
                    value_sha256=replacement.value_sha256, created_at=replacement.created_at))
                if replaced.rowcount != 1:
                    return False
            else:
                await conn.execute(update(outbox).where(o.message_id == message_id).values(held=False))
            await conn.execute(update(submissions).where(and_(
                s.dossier_no == key.dossier_no, s.revision == key.revision)).values(
                state="accepted", content_sha256=portal_sha256, confirmed_at=now, updated_at=now))
            await conn.execute(update(submission_conflicts).where(and_(
                c.dossier_no == key.dossier_no, c.revision == key.revision, c.outcome.is_(None))).values(
                outcome="settled_portal", portal_sha256=portal_sha256, note=note, settled_at=now))
        return True

    async def leave_conflict_unsettled(self, key: SubmissionKey, *, portal_sha256: str | None, note: str,
                                       now: datetime) -> None:
        """The portal's answer cannot settle the revision's open conflicts (``note``: why, the rule, no
        values): they are closed as ``unsettled`` for an operator; the revision stays in conflict (withheld,
        not acknowledged). A new conflicting body opens the question again."""
        c = submission_conflicts.c
        async with store_errors(), self._engine.begin() as conn:
            await conn.execute(update(submission_conflicts).where(and_(
                c.dossier_no == key.dossier_no, c.revision == key.revision, c.outcome.is_(None))).values(
                outcome="unsettled", portal_sha256=portal_sha256, note=note, settled_at=now))

    async def submission_conflicts(self, *, dossier_no: str | None = None, limit: int = 100) -> list[ConflictRow]:
        """Conflicts met, newest first (what ``submissions list --conflicts`` shows)."""
        c = submission_conflicts.c
        query = select(c.id, c.dossier_no, c.revision, c.first_sha256, c.content_sha256, c.received_via,
                       c.detected_at, c.outcome, c.portal_sha256, c.note, c.settled_at)
        if dossier_no is not None:
            query = query.where(c.dossier_no == dossier_no)
        query = query.order_by(c.detected_at.desc(), c.id.desc()).limit(limit)
        async with store_errors(), self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [ConflictRow(r.id, r.dossier_no, r.revision, r.first_sha256, r.content_sha256, r.received_via,
                            _utc(r.detected_at), r.outcome, r.portal_sha256, r.note, stored_utc(r.settled_at))
                for r in rows]

    # --- cursors --------------------------------------------------------------------------------------

    async def cursor(self, name: str) -> str | None:
        async with store_errors(), self._engine.connect() as conn:
            value = await conn.scalar(select(pull_cursors.c.position).where(pull_cursors.c.name == name))
        return None if value is None else str(value)

    async def set_cursor(self, name: str, position: str, now: datetime) -> None:
        async with store_errors(), self._engine.begin() as conn:
            changed = await conn.execute(update(pull_cursors).where(pull_cursors.c.name == name).values(
                position=position, updated_at=now))
            if changed.rowcount == 0:
                await conn.execute(insert(pull_cursors).values(name=name, position=position, updated_at=now))

    # --- payments -------------------------------------------------------------------------------------

    async def register_payment(self, row: PaymentRow, now: datetime) -> PaymentRow | None:
        """Watch a requested payment; return the row already held for its reference, if any (a request
        delivered again finds it, and changes nothing)."""
        values = fitted(payments, {
            "reference": row.reference, "dossier_no": row.dossier_no, "amount": row.amount,
            "currency": row.currency, "requested_at": row.requested_at, "expires_at": row.expires_at,
            "event_id": row.event_id, "state": "pending", "next_query_at": row.next_query_at, "queries": 0,
            "created_at": now})
        async with store_errors(), self._engine.begin() as conn:
            inserted = await conn.execute(self._insert(payments).values(values).on_conflict_do_nothing(
                index_elements=["reference"]))
            if inserted.rowcount == 1:
                return None
            existing = (await conn.execute(select(payments).where(payments.c.reference == row.reference))).first()
        return None if existing is None else _payment(existing)

    async def payment(self, reference: str) -> PaymentRow | None:
        async with store_errors(), self._engine.connect() as conn:
            row = (await conn.execute(select(payments).where(payments.c.reference == reference))).first()
        return None if row is None else _payment(row)

    async def due_payments(self, now: datetime, *, limit: int = 100) -> list[PaymentRow]:
        """Pending payments whose next QUERY (or expiry) is due."""
        c = payments.c
        query = select(payments).where(and_(c.state == "pending", c.next_query_at <= now)).order_by(
            c.next_query_at).limit(limit)
        async with store_errors(), self._engine.connect() as conn:
            return [_payment(row) for row in (await conn.execute(query)).all()]

    async def next_due(self) -> datetime | None:
        c = payments.c
        async with store_errors(), self._engine.connect() as conn:
            value = await conn.scalar(select(func.min(c.next_query_at)).where(c.state == "pending"))
        return stored_utc(value)

    async def decide_payment(self, reference: str, outcome: str, *, by: str, message: OutboxMessage,
                             now: datetime) -> bool:
        """Settle a pending payment and owe its outcome message, in one transaction; False when it was
        settled before (by the other path, or an earlier call): nothing is written then."""
        c = payments.c
        async with store_errors(), self._engine.begin() as conn:
            changed = await conn.execute(update(payments).where(and_(
                c.reference == reference, c.state == "pending")).values(
                state=outcome, decided_at=now, decided_by=by, next_query_at=None))
            if changed.rowcount != 1:
                return False
            await conn.execute(insert(outbox).values(_outbox_row(message)))
        return True

    async def reschedule_query(self, reference: str, *, next_at: datetime, result: str) -> None:
        c = payments.c
        async with store_errors(), self._engine.begin() as conn:
            await conn.execute(update(payments).where(and_(c.reference == reference, c.state == "pending")).values(
                next_query_at=next_at, queries=c.queries + 1, last_query_result=result[:100]))

    async def payments_list(self, *, state: str | None = None, dossier_no: str | None = None,
                            limit: int = 100) -> list[PaymentRow]:
        return await self._newest_first(select(payments), payments, payments.c.requested_at, _payment,
                                        state=state, dossier_no=dossier_no, limit=limit)

    async def payment_counts(self) -> dict[str, int]:
        async with store_errors(), self._engine.connect() as conn:
            rows = (await conn.execute(select(payments.c.state, func.count()).group_by(payments.c.state))).all()
        return {state: int(count) for state, count in rows}

    # --- leases ---------------------------------------------------------------------------------------

    async def take_lease(self, name: str, holder: str, *, now: datetime, until: datetime) -> bool:
        """Hold ``name`` until ``until`` if it is free, lapsed, or already ours; True when we hold it."""
        c = leases.c
        async with store_errors(), self._engine.begin() as conn:
            changed = await conn.execute(update(leases).where(and_(
                c.name == name, or_(c.holder == holder, c.expires_at < now))).values(holder=holder, expires_at=until))
            if changed.rowcount == 1:
                return True
            inserted = await conn.execute(self._insert(leases).values(
                name=name, holder=holder, expires_at=until).on_conflict_do_nothing(index_elements=["name"]))
            return inserted.rowcount == 1

    async def release_lease(self, name: str, holder: str) -> None:
        async with store_errors(), self._engine.begin() as conn:
            await conn.execute(delete(leases).where(and_(leases.c.name == name, leases.c.holder == holder)))


def _submission(row: Any) -> SubmissionRow:
    return SubmissionRow(row.dossier_no, row.revision, row.state, row.received_via, row.agency_code,
                         row.message_id, row.published_at is not None, row.reason, row.field, row.message,
                         row.attempts, _utc(row.first_seen_at), _utc(row.updated_at), row.content_sha256,
                         stored_utc(row.confirmed_at))


__all__ = ["CONFLICT_OUTCOMES", "PAYMENT_STATES", "SUBMISSION_STATES", "ConflictRow", "InboundStore", "MetBefore",
           "OpenConflict", "OutboxMessage", "PaymentRow", "Published", "SubmissionKey", "SubmissionRow"]
