"""The ``UpdateStatistic`` record (pure): one agency's month of the report, as the integration platform takes it
(PORTAL.md §3 "Pushing statistics").

- NewReception received, PreExtisting (sic) carried over, Total = TotalSolved + TotalPending.
- SolvedInTime / SolvedLate: percent of the resolved ended in time (early or on time) / late.
- Pending: the pending dossiers within deadline (a count); PendingLate / PendingPercent: percent of the pending
  overdue / within deadline.
- Percentages are exact, rounded half up to two decimals. With nothing to divide by the field carries 0 (the
  schema wants a number) and Note says so: never 100 for a month in which nothing was resolved.
- Note is stable for the same figures (no timestamp in it), so an unchanged month is an unchanged record.
"""

from __future__ import annotations

from typing import Any

from connector.stats.report import Period, Row, percent

NOTE_LIMIT = 2000
NAME_LIMIT = 500


def statistic_record(row: Row, period: Period, *, final: bool) -> dict[str, Any]:
    """The record for ``row`` (one agency, ungrouped) of the month ``period``."""
    if period.kind != "month":
        raise ValueError("UpdateStatistic takes a month")
    notes = ["Số liệu chốt tháng" if final else "Số liệu tạm tính trong tháng"]
    in_time = _share(row.resolved_in_time, row.resolved, "SolvedInTime", notes)
    late = _share(row.late, row.resolved, "SolvedLate", notes)
    overdue = _share(row.overdue, row.pending, "PendingLate", notes)
    within = _share(row.within, row.pending, "PendingPercent", notes)
    if row.withdrawn or row.refused:
        notes.append(f"đã giải quyết gồm {row.withdrawn} rút hồ sơ, {row.refused} từ chối/dừng xử lý")
    return {
        "Month": period.number,
        "Year": period.year,
        "IsMonthStatistic": True,
        "NewReception": row.received,
        "PreExtisting": row.carried_over,
        "Total": row.total,
        "TotalSolved": row.resolved,
        "SolvedInTime": in_time,
        "SolvedLate": late,
        "TotalPending": row.pending,
        "Pending": row.within,
        "PendingLate": overdue,
        "PendingPercent": within,
        "Note": "; ".join(notes)[:NOTE_LIMIT],
        "OrganizationInchargeIdlevel1": row.agency_code,
        "OrganizationInchargeName": row.agency_name[:NAME_LIMIT],
    }


def _share(part: int, whole: int, name: str, notes: list[str]) -> float:
    value = percent(part, whole)
    if value is None:
        notes.append(f"{name} = 0: không có hồ sơ để tính")
        return 0.0
    return float(value)
