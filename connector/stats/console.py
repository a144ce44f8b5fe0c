"""What the ``stats`` commands print (pure): the report in the seed statistics page's column order, the
index with the dossiers that cost points, as rich tables, CSV or JSON."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from decimal import Decimal

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from connector.stats.index import AgencyIndex
from connector.stats.report import Report, Row

# The seed page's order first (received, resolved, pending within / overdue, early, on time), then the rest.
REPORT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("received", "Tiếp nhận"), ("resolved", "Giải quyết"), ("within", "HST còn hạn"), ("overdue", "HST trễ hạn"),
    ("early", "Trước hạn"), ("on_time", "Đúng hạn"), ("late", "Trễ hạn"), ("carried_over", "Kỳ trước"),
    ("total", "Tổng"), ("received_online", "Trực tuyến"), ("received_direct", "Trực tiếp/BCCI"),
    ("withdrawn", "Rút"), ("refused", "Từ chối/Dừng"),
)


def _percent(value: Decimal | None) -> str:
    return "—" if value is None else f"{value}%"


def _label(row: Row) -> str:
    return row.agency_code if row.key is None else f"{row.agency_code} / {row.key}"


def report_table(report: Report) -> RenderableType:
    title = f"Statistics {report.period}" + (f" by {report.group_by}" if report.group_by else "")
    table = Table(title=title, title_justify="left", caption_justify="left",
                  caption=f"pending judged at {report.as_of.isoformat(timespec='minutes')}; resolved includes "
                          "withdrawn and refused; in time = early + on time")
    table.add_column("agency" if report.group_by is None else f"agency / {report.group_by}")
    for _, heading in REPORT_COLUMNS:
        table.add_column(heading, justify="right")
    table.add_column("in time %", justify="right")
    for row in (*report.rows, report.total):
        style = "bold" if row is report.total else ""
        cells = [Text("all" if row is report.total else _label(row), style=style)]
        cells += [Text(str(getattr(row, name)), style=style) for name, _ in REPORT_COLUMNS]
        cells.append(Text(_percent(row.percentages()["in_time"]), style=style))
        table.add_row(*cells)
    return table


def report_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["period", "agency_code", "agency_name", "key", *(name for name, _ in REPORT_COLUMNS),
                     "in_time_percent", "late_percent", "overdue_percent"])
    for row in (*report.rows, report.total):
        shares = row.percentages()
        writer.writerow([str(report.period), row.agency_code or "all", row.agency_name, row.key or "",
                         *(getattr(row, name) for name, _ in REPORT_COLUMNS),
                         *("" if shares[k] is None else str(shares[k]) for k in ("in_time", "late", "overdue"))])
    return out.getvalue()


def index_view(indexes: Sequence[AgencyIndex], period: str, *, costly_limit: int = 50) -> RenderableType:
    table = Table(title=f"On-time index (indicator 2.1), forecast for {period}", title_justify="left",
                  caption="points = 20 × (ended in time + pending within deadline) ÷ dossiers handled",
                  caption_justify="left")
    for heading in ("agency", "handled", "in time", "points /20", "online share", "paid online / with fees",
                    "online payment /6"):
        table.add_column(heading, justify="left" if heading == "agency" else "right")
    parts: list[RenderableType] = [table]
    for index in indexes:
        table.add_row(Text(index.agency_code), Text(str(index.judged)), Text(str(index.in_time)),
                      Text("—" if index.points is None else str(index.points)),
                      Text(_percent(index.online_share)), Text(f"{index.paid_online} / {index.with_fees}"),
                      Text("—" if index.online_payment_points is None else str(index.online_payment_points)))
        if index.costly:
            costly = Table(title=f"{index.agency_code}: {len(index.costly)} dossier(s) that cost points",
                           title_justify="left")
            for heading in ("dossier", "procedure", "standing", "why"):
                costly.add_column(heading)
            for item in index.costly[:costly_limit]:
                costly.add_row(Text(item.dossier_no), Text(item.procedure_code), Text(item.standing),
                               Text(item.why))
            if len(index.costly) > costly_limit:
                costly.caption = f"the first {costly_limit}; --json lists them all"
            parts.append(costly)
    return Group(*parts)
