"""What the operators' commands print: rich tables for people, JSON for scripts. Pure: values in, text or
renderables out."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from connector.operators.realign import Finding, Sent
from connector.operators.replay import Planned, Replayed
from connector.store import LedgerRecord, stored_utc

_LIST_COLUMNS = ("id", "state", "dossier_no", "event_version", "service", "error_class", "reason", "attempts",
                 "last_failed_at")


utc = stored_utc  # stored times, shown and written as JSON in UTC


def as_utc(moment: datetime) -> datetime:
    """A time an operator gave, in UTC; without an offset it is this machine's local time. ValueError when it
    falls outside the years 1-9999 once in UTC (9999-12-31T23:59-23:59)."""
    try:
        return moment.astimezone(UTC)  # astimezone reads a naive time as local time
    except OverflowError:
        raise ValueError("must be a time within the years 1-9999 once in UTC") from None


def parse_moment(text: str) -> datetime:
    """An ISO 8601 date or date-time typed by an operator, in UTC (see ``as_utc``)."""
    return as_utc(datetime.fromisoformat(text))


def failure_summary(row: Mapping[str, Any]) -> dict[str, Any]:
    """A failure row for a listing: without the event's bytes and the mapped payload (``show`` has them)."""
    return {k: v for k, v in row.items() if k not in ("record_key", "record_value", "mapped_payload")}


def plain(value: Any) -> Any:
    """A stored value as JSON: times in ISO 8601 UTC, bytes as text when they are UTF-8 (else base64)."""
    if isinstance(value, datetime):
        moment = utc(value)
        return moment.isoformat() if moment is not None else None
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(raw).decode("ascii")}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def to_json(value: Any) -> str:
    return json.dumps(plain(value), ensure_ascii=False, indent=2)


def _cell(value: Any, style: str = "") -> Text:
    """A table cell. Always ``Text``: a plain string would be read as Rich markup, and these values come
    from events, the DLQ and the portal ("[/x]" in a key would end the command with a traceback)."""
    if value is None:
        return Text("–")
    if isinstance(value, datetime):
        moment = utc(value)
        return Text(moment.strftime("%Y-%m-%d %H:%M:%S") if moment is not None else "–")
    return Text(str(value), style=style)


def failures_table(rows: Sequence[Mapping[str, Any]], *, total: int) -> Table:
    title = f"{len(rows)} of {total} failure(s)" if total != len(rows) else f"{total} failure(s)"
    table = Table(title=title, title_justify="left", caption="times in UTC", caption_justify="left")
    for column in _LIST_COLUMNS:
        table.add_column(column.replace("_", " "), no_wrap=column in ("dossier_no", "last_failed_at"),
                         justify="right" if column in ("id", "attempts", "event_version") else "left")
    for row in rows:
        table.add_row(*(_cell(row.get(column)) for column in _LIST_COLUMNS))
    return table


def _pretty_event(value: bytes | None) -> RenderableType:
    if value is None:
        return Text("(not kept: too large; the DLQ headers say where it lies)", style="italic")
    try:
        document = json.loads(value)
    except ValueError:
        return Text(f"(not JSON; {len(value)} bytes) {value[:200]!r}")
    return Syntax(json.dumps(document, ensure_ascii=False, indent=2), "json", word_wrap=True)


def failure_detail(failure: Mapping[str, Any]) -> RenderableType:
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    for label, key in (("failure", "id"), ("state", "state"), ("state reason", "state_reason"),
                       ("changed by", "state_changed_by"), ("changed at", "state_changed_at"),
                       ("dossier", "dossier_no"), ("version", "event_version"), ("event id", "event_id"),
                       ("service", "service"), ("error class", "error_class"), ("kind", "error_kind"),
                       ("reason", "reason"), ("field", "field"), ("message", "message"), ("attempts", "attempts"),
                       ("first failed", "first_failed_at"), ("last failed", "last_failed_at")):
        facts.add_row(label, _cell(failure.get(key)))
    facts.add_row("kafka", _cell(f"{failure['topic']}[{failure['partition']}] offset {failure['offset']}"))
    history = Table(title="attempts", title_justify="left")
    for column in ("at", "origin", "error class", "reason", "field", "attempts", "message"):
        history.add_column(column)
    for attempt in failure.get("attempts_history", ()):
        history.add_row(*(_cell(attempt[k]) for k in ("at", "origin", "error_class", "reason", "field", "attempts",
                                                     "message")))
    parts: list[RenderableType] = [facts, history, Text("event", style="bold"), _pretty_event(failure["record_value"])]
    if failure.get("mapped_payload") is not None:
        parts += [Text("mapped payload", style="bold"),
                  Syntax(json.dumps(failure["mapped_payload"], ensure_ascii=False, indent=2), "json", word_wrap=True)]
    return Group(*parts)


def plan_table(planned: Iterable[Planned], *, dry_run: bool) -> Table:
    table = Table(title="replay, dry run: nothing is sent" if dry_run else "replay plan", title_justify="left")
    for column in ("failure", "dossier", "version", "would" if dry_run else "will", "detail"):
        table.add_column(column)
    for item in planned:
        table.add_row(_cell(item.failure_id), _cell(item.dossier_no), _cell(item.version), _cell(item.action),
                      _cell(item.detail))
    return table


def replayed_table(outcomes: Iterable[Replayed]) -> Table:
    table = Table(title="replay", title_justify="left")
    for column in ("failure", "dossier", "version", "now", "detail"):
        table.add_column(column)
    for outcome in sorted(outcomes, key=lambda o: o.failure_id):
        style = {"replayed": "green", "resolved": "cyan", "open": "red"}[outcome.state]
        table.add_row(_cell(outcome.failure_id), _cell(outcome.dossier_no), _cell(outcome.version),
                      _cell(outcome.state, style), _cell(outcome.detail))
    return table


def ledger_table(records: Sequence[LedgerRecord], *, total: int, title: str) -> Table:
    table = Table(title=f"{title}: {total} dossier(s)" + (f", the first {len(records)} shown" if total > len(records)
                                                           else ""),
                  title_justify="left", caption="times in UTC", caption_justify="left")
    for column in ("dossier", "version", "agency", "procedure", "received", "last synced"):
        table.add_column(column, no_wrap=True)
    for r in records:
        table.add_row(_cell(r.dossier_no), _cell(r.version), _cell(r.agency_code), _cell(r.procedure_code),
                      _cell(r.received_at), _cell(r.updated_at))
    return table


def sent_table(items: Iterable[Sent], *, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("dossier", "version", "state", "detail"):
        table.add_column(column)
    for item in items:
        style = {"sent": "green", "failed": "red", "not_kept": "yellow"}[item.state]
        table.add_row(_cell(item.dossier_no), _cell(item.version), _cell(item.state, style), _cell(item.detail))
    return table


def findings_table(findings: Iterable[Finding]) -> Table:
    table = Table(title="reconcile: where the portal differs", title_justify="left")
    for column in ("dossier", "version", "found", "fixed", "detail"):
        table.add_column(column)
    for f in findings:
        style = {"same": "green", "missing": "red", "differs": "red", "not_kept": "yellow", "error": "yellow"}[f.state]
        fixed = "–" if f.fixed is None else ("yes" if f.fixed else "no")
        table.add_row(_cell(f.dossier_no), _cell(f.version), _cell(f.state, style), _cell(fixed), _cell(f.detail))
    return table


def rows_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    """A plain listing: one row per item, every cell ``Text``."""
    table = Table(title=title, title_justify="left", caption="times in UTC", caption_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_cell(value) for value in row))
    return table
