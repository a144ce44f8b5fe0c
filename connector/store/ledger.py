"""The state store: the sync ledger (per dossier, the newest version the portal acknowledged) and the
failures (every event that could not be synced, kept for inspection and replay)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import structlog
from sqlalchemy import ColumnElement, RowMapping, Text, cast, delete, func, insert, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from connector.store import schema
from connector.store.engine import (
    create_engine,
    fitted,
    store_errors,
    stored_headers,
    stored_utc,
)
from connector.store.tables import (
    dossier_facts,
    dossier_ledger,
    failure_attempts,
    payments,
    portal_calls,
    statistics_pushes,
    sync_failures,
)

log = structlog.get_logger(__name__)


class Synced(NamedTuple):  # tuples: thousands a second are made
    dossier_no: str
    version: int
    record_hash: str
    event_id: str
    record_json: str | None = None  # the record sent, exactly as hashed
    agency_code: str | None = None
    procedure_code: str | None = None
    received_at: datetime | None = None
    outcome: str | None = None  # created / updated / step
    facts: Mapping[str, Any] | None = None  # the dossier's statistics facts after this unit (a dossier_facts row)


@dataclass(frozen=True)
class Failure:
    """An event that could not be synced: where it lies, its bytes, and the last error met."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]]
    dossier_no: str | None
    event_id: str | None
    service: str | None
    mapped_payload: dict[str, Any] | None
    error_class: str
    error_kind: str
    reason: str
    field: str | None
    message: str
    attempts: int
    event_version: int | None = None
    origin: str = "pipeline"  # where it failed: pipeline / replay, or dlq: taken from the DLQ topic


_STATE_REASONS = {"pipeline": None, "replay": "failed again in a replay",
                  "dlq": "taken from the DLQ topic: this store did not have it"}


def failure_row(f: Failure, now: datetime) -> dict[str, Any]:
    """The failure table's row for ``f``, every text fit for its column."""
    return fitted(sync_failures, {
        "topic": f.topic, "partition": f.partition, "offset": f.offset, "dossier_no": f.dossier_no,
        "event_id": f.event_id, "service": f.service, "record_key": f.key, "record_value": f.value,
        "record_headers": stored_headers(f.headers),
        "mapped_payload": f.mapped_payload, "error_class": f.error_class, "error_kind": f.error_kind,
        "reason": f.reason, "field": f.field, "message": f.message, "attempts": f.attempts,
        "first_failed_at": now, "last_failed_at": now, "state": "open", "event_version": f.event_version,
        "state_reason": _STATE_REASONS.get(f.origin, f"failed again in a {f.origin}")})


class LedgerEntry(NamedTuple):
    dossier_no: str
    last_version: int
    record_hash: str
    exists_on_portal: bool


class LedgerRecord(NamedTuple):
    """A dossier's newest state the portal acknowledged, with the record as sent (for backfill and
    reconcile)."""

    dossier_no: str
    version: int
    record_hash: str
    event_id: str
    record_json: str | None  # None in rows written before revision 0002: nothing to re-send
    agency_code: str | None
    procedure_code: str | None
    received_at: datetime | None
    updated_at: datetime

    def synced(self, outcome: str) -> Synced:
        """This state acknowledged again (a backfill or a reconcile re-sent it)."""
        return Synced(self.dossier_no, self.version, self.record_hash, self.event_id, self.record_json,
                      self.agency_code, self.procedure_code, self.received_at, outcome)


class StateStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert

    @classmethod
    def create(cls, url: str) -> StateStore:
        """The store for ``url``, not yet connected (connections are made on first use)."""
        return cls(create_engine(url))

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True) -> StateStore:
        """Connect, and bring the schema to the newest revision unless ``migrate`` is false."""
        store = cls.create(url)
        if migrate:
            try:
                await store.migrate()
            except BaseException:
                await store.close()
                raise
        return store

    async def migrate(self) -> None:
        """Bring the schema to the newest revision."""
        before, after = await schema.upgrade(self._engine)
        if before != after:
            log.info("state store migrated", from_revision=before, to_revision=after)

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def close(self) -> None:
        await self._engine.dispose()

    async def ping(self) -> None:
        async with self._engine.connect() as conn:
            await conn.execute(select(1))

    async def get(self, dossier_no: str) -> LedgerEntry | None:
        return (await self.get_many([dossier_no])).get(dossier_no)

    async def get_many(self, dossier_nos: Sequence[str]) -> dict[str, LedgerEntry]:
        """Entries of the dossiers the ledger knows, in one query."""
        query = select(
            dossier_ledger.c.dossier_no, dossier_ledger.c.last_version, dossier_ledger.c.record_hash,
            dossier_ledger.c.exists_on_portal,
        ).where(dossier_ledger.c.dossier_no.in_(set(dossier_nos)))
        async with store_errors(), self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {row[0]: LedgerEntry(row[0], row[1], row[2], row[3]) for row in rows}

    async def get_many_with_facts(self, dossier_nos: Sequence[str]) -> tuple[dict[str, LedgerEntry],
                                                                              dict[str, dict[str, Any]]]:
        """The ledger entries and the facts rows of these dossiers (those known), in one connection."""
        wanted = set(dossier_nos)
        entries = select(
            dossier_ledger.c.dossier_no, dossier_ledger.c.last_version, dossier_ledger.c.record_hash,
            dossier_ledger.c.exists_on_portal,
        ).where(dossier_ledger.c.dossier_no.in_(wanted))
        async with store_errors(), self._engine.connect() as conn:
            rows = (await conn.execute(entries)).all()
            facts = (await conn.execute(select(dossier_facts).where(dossier_facts.c.dossier_no.in_(wanted)))).all()
        return ({row[0]: LedgerEntry(row[0], row[1], row[2], row[3]) for row in rows},
                {row.dossier_no: _read_back(row._mapping) for row in facts})

    async def ledger_records(self, where: LedgerFilter, *, after: str = "", limit: int = 500) -> list[LedgerRecord]:
        """Ledger rows matching ``where``, by dossier number, from the one after ``after`` (paging)."""
        query = (select(*_LEDGER_RECORD).where(*where.clauses(), dossier_ledger.c.dossier_no > after)
                 .order_by(dossier_ledger.c.dossier_no).limit(limit))
        async with store_errors(), self._engine.connect() as conn:
            return [LedgerRecord(*row) for row in (await conn.execute(query)).all()]

    async def sample_ledger(self, where: LedgerFilter, size: int) -> list[LedgerRecord]:
        """Up to ``size`` ledger rows matching ``where``, drawn at random."""
        query = select(*_LEDGER_RECORD).where(*where.clauses()).order_by(func.random()).limit(size)
        async with store_errors(), self._engine.connect() as conn:
            return [LedgerRecord(*row) for row in (await conn.execute(query)).all()]

    async def ledger_records_of(self, dossier_nos: Sequence[str]) -> dict[str, LedgerRecord]:
        """The ledger rows of these dossiers (those the ledger knows)."""
        query = select(*_LEDGER_RECORD).where(dossier_ledger.c.dossier_no.in_(set(dossier_nos)))
        async with store_errors(), self._engine.connect() as conn:
            return {row[0]: LedgerRecord(*row) for row in (await conn.execute(query)).all()}

    async def count_ledger(self, where: LedgerFilter) -> int:
        query = select(func.count()).select_from(dossier_ledger).where(*where.clauses())
        async with store_errors(), self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def record_synced(self, dossier_no: str, version: int, record_hash: str, event_id: str) -> None:
        """The portal acknowledged ``version``. Never moves a dossier's version backwards: another writer
        (a second instance, a replay) may have recorded a newer one meanwhile."""
        await self.record_synced_many([Synced(dossier_no, version, record_hash, event_id)])

    async def record_synced_many(self, synced: Sequence[Synced]) -> None:
        """Several acknowledgements in one transaction (one dossier at most once per call)."""
        if not synced:
            return
        now = datetime.now(UTC)
        rows = [
            {"dossier_no": s.dossier_no, "last_version": s.version, "record_hash": s.record_hash,
             "exists_on_portal": True, "last_event_id": s.event_id, "updated_at": now,
             "record_json": s.record_json, "agency_code": s.agency_code, "procedure_code": s.procedure_code,
             "received_at": stored_utc(s.received_at), "last_outcome": s.outcome}
            for s in synced
        ]
        stmt = self._insert(dossier_ledger)
        stmt = stmt.on_conflict_do_update(
            index_elements=[dossier_ledger.c.dossier_no],
            set_={k: stmt.excluded[k] for k in rows[0] if k != "dossier_no"},
            where=stmt.excluded.last_version >= dossier_ledger.c.last_version,
        )
        facts = [dict(s.facts, updated_at=now) for s in synced if s.facts is not None]
        async with store_errors(), self._engine.begin() as conn:
            await conn.execute(stmt, rows)
            if facts:
                await self._upsert_facts(conn, facts)

    async def _upsert_facts(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        """Facts rows, each kept only when it folds in a version at least as new as the stored one's."""
        rows = [fitted(dossier_facts, {k: stored_utc(v) if isinstance(v, datetime) else v for k, v in r.items()})
                for r in rows]
        stmt = self._insert(dossier_facts)
        stmt = stmt.on_conflict_do_update(
            index_elements=[dossier_facts.c.dossier_no],
            set_={k: stmt.excluded[k] for k in rows[0] if k != "dossier_no"},
            where=stmt.excluded.version >= dossier_facts.c.version,
        )
        await conn.execute(stmt, rows)

    async def record_facts(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Facts rows on their own (``stats rebuild``), in one transaction."""
        if rows:
            now = datetime.now(UTC)
            async with store_errors(), self._engine.begin() as conn:
                await self._upsert_facts(conn, [dict(r, updated_at=now) for r in rows])

    async def facts_of(self, dossier_nos: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The facts rows of these dossiers (those that have one)."""
        query = select(dossier_facts).where(dossier_facts.c.dossier_no.in_(set(dossier_nos)))
        async with store_errors(), self._engine.connect() as conn:
            return {row.dossier_no: _read_back(row._mapping) for row in (await conn.execute(query)).all()}

    async def facts_in_view(self, *, start: datetime, end: datetime, agency_code: str | None = None,
                            batch: int = 5000) -> list[dict[str, Any]]:
        """Facts rows of the dossiers a report of [start, end) sees: accepted before its end and not ended
        before its start (refused-at-desk ones included; the report leaves them out)."""
        c = dossier_facts.c
        found: list[dict[str, Any]] = []
        after = ""
        while True:
            query = select(dossier_facts).where(
                c.received_at < stored_utc(end), or_(c.ended_at.is_(None), c.ended_at >= stored_utc(start)),
                c.dossier_no > after).order_by(c.dossier_no).limit(batch)
            if agency_code is not None:
                query = query.where(c.agency_code == agency_code)
            async with store_errors(), self._engine.connect() as conn:
                rows = [_read_back(row._mapping) for row in (await conn.execute(query)).all()]
            found.extend(rows)
            if len(rows) < batch:
                return found
            after = rows[-1]["dossier_no"]

    async def paid_online(self, dossier_nos: Sequence[str]) -> set[str]:
        """Of these dossiers, those with a payment the Payment Platform confirmed (paid online)."""
        found: set[str] = set()
        nos = sorted(set(dossier_nos))
        for start in range(0, len(nos), 1000):
            query = select(payments.c.dossier_no).where(
                payments.c.dossier_no.in_(nos[start:start + 1000]), payments.c.state == "confirmed").distinct()
            async with store_errors(), self._engine.connect() as conn:
                found.update(row[0] for row in (await conn.execute(query)).all())
        return found

    async def statistics_pushes(self, *, year: int, month: int) -> dict[str, dict[str, Any]]:
        """The statistics records last pushed (or tried) for a month, by agency."""
        query = select(statistics_pushes).where(statistics_pushes.c.year == year, statistics_pushes.c.month == month)
        async with store_errors(), self._engine.connect() as conn:
            return {row.agency_code: _read_back(row._mapping) for row in (await conn.execute(query)).all()}

    async def record_statistics_push(self, *, agency_code: str, year: int, month: int, record_json: str,
                                     record_sha256: str, final: bool, error: str | None) -> None:
        """A push of one agency's month: accepted (``error`` None: counted, the record kept as the portal's) or
        failed (the error kept beside the record last accepted, which stays)."""
        now = datetime.now(UTC)
        row = {"agency_code": agency_code, "year": year, "month": month, "record_json": record_json,
               "record_sha256": record_sha256, "final": final, "pushed_at": now if error is None else None,
               "pushes": 1 if error is None else 0, "state": "pushed" if error is None else "failed",
               "last_attempt_at": now, "last_error": error}
        stmt = self._insert(statistics_pushes)
        c = statistics_pushes.c
        if error is None:
            changes: dict[str, Any] = {k: stmt.excluded[k] for k in ("record_json", "record_sha256", "final",
                                                                      "pushed_at", "state", "last_attempt_at",
                                                                      "last_error")}
            changes["pushes"] = c.pushes + 1
        else:
            changes = {"state": stmt.excluded.state, "last_attempt_at": stmt.excluded.last_attempt_at,
                       "last_error": stmt.excluded.last_error}
        stmt = stmt.on_conflict_do_update(index_elements=[c.agency_code, c.year, c.month], set_=changes)
        async with store_errors(), self._engine.begin() as conn:
            await conn.execute(stmt, [fitted(statistics_pushes, row)])

    async def record_failures(self, failures: Sequence[Failure]) -> None:
        """Record failed events (one transaction). A record that fails again stays one row: the newest
        error, the attempts added up, and open again whatever its state was."""
        if not failures:
            return
        now = datetime.now(UTC)
        rows = [failure_row(f, now) for f in failures]
        stmt = self._insert(sync_failures)
        again = ("dossier_no", "event_id", "service", "mapped_payload", "error_class", "error_kind", "reason",
                 "field", "message", "last_failed_at", "state", "event_version", "state_reason")
        stmt = stmt.on_conflict_do_update(
            index_elements=[sync_failures.c.topic, sync_failures.c.partition, sync_failures.c.offset],
            set_={**{k: stmt.excluded[k] for k in again},
                  "attempts": sync_failures.c.attempts + stmt.excluded.attempts,
                  "state_changed_by": None, "state_changed_at": None},
        )
        # One record twice in a batch would make one upsert touch a row twice: keep the newest.
        unique = list({(r["topic"], r["partition"], r["offset"]): r for r in rows}.values())
        # Keyed as stored: the row's text was fit for its column (a hostile topic name cut, NUL replaced).
        origins = {(r["topic"], r["partition"], r["offset"]): f.origin for f, r in zip(failures, rows, strict=True)}
        async with store_errors(), self._engine.begin() as conn:
            await conn.execute(stmt, unique)
            # Every failure is also an attempt in the row's history.
            ids = await self._failure_ids(conn, [(r["topic"], r["partition"], r["offset"]) for r in unique])
            await conn.execute(insert(failure_attempts), [
                {"failure_id": ids[(r["topic"], r["partition"], r["offset"])], "at": now,
                 "origin": origins[(r["topic"], r["partition"], r["offset"])], "error_class": r["error_class"],
                 "error_kind": r["error_kind"], "reason": r["reason"], "field": r["field"], "message": r["message"],
                 "attempts": r["attempts"]}
                for r in unique])

    @staticmethod
    async def _failure_ids(conn: AsyncConnection, coordinates: list[tuple[str, int, int]]) -> dict[tuple[str, int, int],
                                                                                                  int]:
        query = select(sync_failures.c.id, sync_failures.c.topic, sync_failures.c.partition,
                       sync_failures.c.offset).where(
            tuple_(sync_failures.c.topic, sync_failures.c.partition, sync_failures.c.offset).in_(coordinates))
        return {(row.topic, row.partition, row.offset): row.id for row in (await conn.execute(query)).all()}

    async def record_portal_calls(self, rows: Sequence[dict[str, Any]]) -> None:
        """Audit rows (see ``portal_calls``), in one transaction."""
        if rows:
            async with store_errors(), self._engine.begin() as conn:
                await conn.execute(insert(portal_calls), [fitted(portal_calls, dict(row)) for row in rows])

    async def prune_portal_calls(self, *, before: datetime) -> int:
        """Delete audit rows older than ``before``; how many went."""
        async with store_errors(), self._engine.begin() as conn:
            return (await conn.execute(delete(portal_calls).where(portal_calls.c.at < before))).rowcount

    async def portal_calls(self, *, dossier_no: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Audit rows, newest first (those naming ``dossier_no`` when given)."""
        query = select(portal_calls).order_by(portal_calls.c.id.desc()).limit(limit)
        if dossier_no is not None:
            # Within the JSON list as stored: a scan, bounded by the retention; operators ask rarely.
            quoted = json.dumps(dossier_no).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(or_(portal_calls.c.dossier_no == dossier_no,
                                    cast(portal_calls.c.dossiers, Text).like(f"%{quoted}%", escape="\\")))
        async with store_errors(), self._engine.connect() as conn:
            return [dict(row._mapping) for row in (await conn.execute(query)).all()]

    async def failures(self, *, state: str | None = "open") -> list[dict[str, Any]]:
        """Recorded failures, oldest first (all states when ``state`` is None)."""
        where = FailureFilter(states=(state,) if state is not None else ())
        return await self.list_failures(where, limit=None)

    async def list_failures(self, where: FailureFilter, *, limit: int | None = 100,
                            after_id: int = 0) -> list[dict[str, Any]]:
        """Failures matching ``where``, oldest first, from the one after ``after_id`` (paging)."""
        query = select(sync_failures).where(*where.clauses(), sync_failures.c.id > after_id).order_by(
            sync_failures.c.id)
        if limit is not None:
            query = query.limit(limit)
        async with store_errors(), self._engine.connect() as conn:
            return [dict(row._mapping) for row in (await conn.execute(query)).all()]

    async def count_failures(self, where: FailureFilter) -> int:
        query = select(func.count()).select_from(sync_failures).where(*where.clauses())
        async with store_errors(), self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def known_failures(self, coordinates: Sequence[tuple[str, int, int]]) -> dict[tuple[str, int, int], int]:
        """Of these Kafka records (topic, partition, offset), the ones in the failure table, with their ids."""
        if not coordinates:
            return {}
        async with store_errors(), self._engine.connect() as conn:
            return await self._failure_ids(conn, list(coordinates))

    async def failure(self, failure_id: int) -> dict[str, Any] | None:
        """One failure with every attempt (``attempts_history``, oldest first), or None."""
        async with store_errors(), self._engine.connect() as conn:
            row = (await conn.execute(select(sync_failures).where(sync_failures.c.id == failure_id))).first()
            if row is None:
                return None
            attempts = (await conn.execute(
                select(failure_attempts).where(failure_attempts.c.failure_id == failure_id)
                .order_by(failure_attempts.c.id))).all()
        return {**row._mapping, "attempts_history": [dict(a._mapping) for a in attempts]}

    async def set_failure_state(self, failure_id: int, state: str, *, by: str, reason: str | None,
                                only_from: Sequence[str] = ()) -> bool:
        """Move a failure to ``state`` (if it is in one of ``only_from``, when given); False if it was not
        there to move."""
        if state not in FAILURE_STATES:
            raise ValueError(f"unknown failure state {state!r}")
        query = update(sync_failures).where(sync_failures.c.id == failure_id).values(
            state=state, state_changed_by=by[:100], state_changed_at=datetime.now(UTC), state_reason=reason)
        if only_from:
            query = query.where(sync_failures.c.state.in_(only_from))
        async with store_errors(), self._engine.begin() as conn:
            return (await conn.execute(query)).rowcount == 1


def _read_back(row: RowMapping) -> dict[str, Any]:
    """A row with its times as aware UTC datetimes (SQLite gives them back without a zone)."""
    return {k: stored_utc(v) if isinstance(v, datetime) else v for k, v in row.items()}


_LEDGER_RECORD = (
    dossier_ledger.c.dossier_no, dossier_ledger.c.last_version, dossier_ledger.c.record_hash,
    dossier_ledger.c.last_event_id, dossier_ledger.c.record_json, dossier_ledger.c.agency_code,
    dossier_ledger.c.procedure_code, dossier_ledger.c.received_at, dossier_ledger.c.updated_at,
)


@dataclass(frozen=True)
class LedgerFilter:
    """Which dossiers of the ledger: every given condition holds."""

    received_since: datetime | None = None  # the dossier's reception (NgayTiepNhan) at or after
    received_until: datetime | None = None  # ... before
    synced_since: datetime | None = None  # last acknowledged by the portal at or after
    agency_code: str | None = None
    procedure_code: str | None = None

    def clauses(self) -> list[ColumnElement[bool]]:
        c = dossier_ledger.c
        found: list[ColumnElement[bool]] = []
        if self.received_since is not None:
            found.append(c.received_at >= self.received_since)
        if self.received_until is not None:
            found.append(c.received_at < self.received_until)
        if self.synced_since is not None:
            found.append(c.updated_at >= self.synced_since)
        if self.agency_code is not None:
            found.append(c.agency_code == self.agency_code)
        if self.procedure_code is not None:
            found.append(c.procedure_code == self.procedure_code)
        return found


FAILURE_STATES = ("open", "replayed", "resolved", "discarded")


@dataclass(frozen=True)
class FailureFilter:
    """Which failures: every given condition holds (an empty ``states`` means any state; ``ids`` None means
    any id, and an empty ``ids`` none at all)."""

    ids: Sequence[int] | None = None
    dossier_no: str | None = None
    service: str | None = None
    error_class: str | None = None
    reason: str | None = None
    since: datetime | None = None  # last failed at or after
    until: datetime | None = None  # last failed before
    states: Sequence[str] = ("open",)

    @staticmethod
    def states_for(state: str | None, *, named: bool = False) -> tuple[str, ...]:
        """The states an operator's ``state`` choice selects: "all" is any; none given is open ones, except
        for failures named by id, taken in whatever state they are (the operator chose them)."""
        if state == "all" or (state is None and named):
            return ()
        return (state or "open",)

    def clauses(self) -> list[ColumnElement[bool]]:
        c = sync_failures.c
        found: list[ColumnElement[bool]] = []
        if self.ids is not None:
            found.append(c.id.in_(list(self.ids)))
        for column, value in ((c.dossier_no, self.dossier_no), (c.service, self.service),
                              (c.error_class, self.error_class), (c.reason, self.reason)):
            if value is not None:
                found.append(column == value)
        if self.since is not None:
            found.append(c.last_failed_at >= self.since)
        if self.until is not None:
            found.append(c.last_failed_at < self.until)
        if self.states:
            found.append(c.state.in_(list(self.states)))
        return found
