"""What the operators' commands print: rich tables for people, JSON for scripts (the values as
``connector.operators.values`` gives them, the admin API's shapes). Pure: values in, text or renderables out."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from connector.operators.reconcile import Finding, Sent
from connector.operators.replay import ReplayReport
from connector.operators.values import plain
from connector.store import LedgerRecord, stored_utc

_LIST_COLUMNS = ("id", "state", "dossier_no", "event_version", "service", "error_class", "reason", "attempts",
                 "last_failed_at")


utc = stored_utc  # stored times, shown in UTC


def to_json(value: Any) -> str:
    """What ``--json`` prints: ``value`` as ``plain`` makes it, the way the admin API replies."""
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


def replay_table(report: ReplayReport) -> Table:
    """A replay's items: what would be done (a dry run), or what was done and the failure's state now."""
    if report.dry_run:
        table = Table(title="replay, dry run: nothing is sent", title_justify="left")
        for column in ("failure", "dossier", "version", "would", "detail"):
            table.add_column(column)
        for item in report.failures:
            table.add_row(_cell(item.failure_id), _cell(item.dossier_no), _cell(item.version), _cell(item.action),
                          _cell(item.detail))
        return table
    table = Table(title="replay", title_justify="left")
    for column in ("failure", "dossier", "version", "did", "now", "detail"):
        table.add_column(column)
    for item in sorted(report.failures, key=lambda i: i.failure_id or 0):
        style = {"replayed": "green", "resolved": "cyan", "open": "red"}.get(item.state or "", "")
        table.add_row(_cell(item.failure_id), _cell(item.dossier_no), _cell(item.version), _cell(item.action),
                      _cell(item.state, style), _cell(item.detail))
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
