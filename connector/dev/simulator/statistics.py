"""The statistics reports the portal holds (``UpdateStatistic``, PORTAL.md section 3), without HTTP.

One report is kept per agency (``OrganizationInchargeIdlevel1``) × ``Year`` × ``Month`` × ``IsMonthStatistic``:
a push replaces the report kept for its key (pushing a month again is idempotent), and the count of pushes shows
that it was pushed again. Reports are validated by ``validation.StatisticReport`` and kept in its normal form
(the XSD's order, ``IsMonthStatistic`` a boolean, percentages numbers, ``Note`` "" when absent); receipt times
are wall-clock seconds from the injected clock, as the dossiers' are.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connector.dev.simulator.validation import StatisticReport, statistic_problem

StatisticKey = tuple[str, int, int, bool]
"""``(OrganizationInchargeIdlevel1, Year, Month, IsMonthStatistic)``."""

STATISTIC_FILTERS = ("agency", "year", "month")


class StatisticRefused(ValueError):
    """A report the portal refuses; the message names the field and the rule (``"Month: must be at most 12"``)."""


@dataclass
class StoredStatistic:
    """The latest report received for one key; ``duplicate_pushes`` counts pushes equal to the report kept."""

    record: dict[str, Any]
    first_received_at: float
    last_received_at: float
    pushes: int = 1
    duplicate_pushes: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "record": self.record,
            "pushes": self.pushes,
            "duplicate_pushes": self.duplicate_pushes,
            "first_received_at": self.first_received_at,
            "last_received_at": self.last_received_at,
        }


class StatisticsDesk:
    def __init__(self, *, wall_clock: Callable[[], float] = time.time) -> None:
        self._wall_clock = wall_clock
        self.reports: dict[StatisticKey, StoredStatistic] = {}

    def push(self, params: Any) -> dict[str, Any]:
        """Keep the report in ``params`` (an envelope: ``session`` and ``service`` are not part of it); answer its
        key, ``action`` ("created" or "replaced") and how many times it was pushed. Raises ``StatisticRefused``."""
        problem = statistic_problem(params)
        if problem is not None:
            raise StatisticRefused(problem)
        record = StatisticReport.model_validate(params).model_dump()  # a new dict: nothing shared with params
        key: StatisticKey = (record["OrganizationInchargeIdlevel1"], record["Year"], record["Month"],
                             record["IsMonthStatistic"])
        now = self._wall_clock()
        stored = self.reports.get(key)
        if stored is None:
            stored = self.reports[key] = StoredStatistic(record, first_received_at=now, last_received_at=now)
            action = "created"
        else:
            if stored.record == record:
                stored.duplicate_pushes += 1
            stored.record = record
            stored.pushes += 1
            stored.last_received_at = now
            action = "replaced"
        return {
            "OrganizationInchargeIdlevel1": key[0], "Year": key[1], "Month": key[2], "IsMonthStatistic": key[3],
            "action": action, "pushes": stored.pushes,
        }  # fmt: skip

    def views(self, agency: str | None = None, year: int | None = None, month: int | None = None
              ) -> list[dict[str, Any]]:
        """The reports kept, by agency, year and month (``IsMonthStatistic`` true before false), optionally only
        those of one agency, year or month."""
        return [
            stored.as_json()
            for key, stored in sorted(self.reports.items(), key=lambda item: (*item[0][:3], not item[0][3]))
            if (agency is None or key[0] == agency) and (year is None or key[1] == year)
            and (month is None or key[2] == month)
        ]

    def reset(self) -> None:
        self.reports.clear()


__all__ = ["STATISTIC_FILTERS", "StatisticKey", "StatisticRefused", "StatisticsDesk", "StoredStatistic"]
