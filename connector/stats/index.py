"""The portal's on-time index, forecast (pure): indicator 2.1 per agency and month, by the portal's rules
(PORTAL.md §3), from the same facts the portal will compute it from, before it publishes it.

- The dossiers judged: those received or processed in the month (received in it, or carried over into it;
  a dossier refused at the desk never counts).
- ratio = (ended in the month on time (early or on time) + pending at the month's end within deadline) ÷ those
  dossiers; points = 20 × ratio, two decimals rounded half up. No dossier: no points (None), never 20.
- Components our events feed: online share (received online ÷ received) and online payment (dossiers paid
  online ÷ dossiers with a fee, among those judged), whose points the portal weights 6 of 10.
- The dossiers that cost points, each with why: late, more than one supplement request, overdue pending.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from connector.stats.deadlines import judge
from connector.stats.facts import DossierFacts
from connector.stats.report import Period, in_view, judged_at, percent

POINTS_FOR_ON_TIME = Decimal(20)
POINTS_FOR_ONLINE_PAYMENT = Decimal(6)


@dataclass(frozen=True)
class CostlyDossier:
    dossier_no: str
    procedure_code: str
    standing: str  # late / overdue / undetermined
    why: str


@dataclass(frozen=True)
class AgencyIndex:
    agency_code: str
    agency_name: str
    judged: int  # received or processed in the month
    in_time: int  # ended on time + pending within deadline
    points: Decimal | None  # 20 × ratio; None without a dossier
    received: int
    received_online: int
    with_fees: int
    paid_online: int
    costly: tuple[CostlyDossier, ...]

    @property
    def ratio_percent(self) -> Decimal | None:
        return percent(self.in_time, self.judged)

    @property
    def online_share(self) -> Decimal | None:
        return percent(self.received_online, self.received)

    @property
    def paid_online_share(self) -> Decimal | None:
        return percent(self.paid_online, self.with_fees)

    @property
    def online_payment_points(self) -> Decimal | None:
        return _points(POINTS_FOR_ONLINE_PAYMENT, self.paid_online, self.with_fees)

    def as_json(self) -> dict[str, object]:
        def text(value: Decimal | None) -> str | None:
            return None if value is None else str(value)

        return {
            "agency_code": self.agency_code, "agency_name": self.agency_name, "judged": self.judged,
            "in_time": self.in_time, "points": text(self.points), "ratio_percent": text(self.ratio_percent),
            "received": self.received, "received_online": self.received_online,
            "online_share_percent": text(self.online_share), "with_fees": self.with_fees,
            "paid_online": self.paid_online, "paid_online_percent": text(self.paid_online_share),
            "online_payment_points": text(self.online_payment_points),
            "costly": [{"dossier_no": c.dossier_no, "procedure_code": c.procedure_code, "standing": c.standing,
                        "why": c.why} for c in self.costly],
        }


def _points(weight: Decimal, part: int, whole: int) -> Decimal | None:
    if whole == 0:
        return None
    return (weight * part / whole).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def build_index(dossiers: Iterable[DossierFacts], period: Period, *, now: datetime,
                paid_online: Collection[str] = (), agency: str | None = None) -> tuple[AgencyIndex, ...]:
    """Indicator 2.1 per agency for ``period`` (a month; a longer period is judged the same way), with the
    dossiers that cost points. ``paid_online``: the dossier numbers the Payment Platform confirmed paid."""
    at = judged_at(period, now)
    by_agency: dict[str, list[DossierFacts]] = {}
    for facts in dossiers:
        if in_view(facts, period) and (agency is None or facts.agency_code == agency):
            by_agency.setdefault(facts.agency_code, []).append(facts)
    found = []
    for code in sorted(by_agency):
        group = by_agency[code]
        in_time = 0
        costly: list[CostlyDossier] = []
        for facts in group:
            ended = facts.ended_at is not None and facts.ended_at < period.end
            verdict = judge(facts.clock, period.end if ended else at)
            if verdict.standing in ("early", "on_time", "within"):
                in_time += 1
            else:
                costly.append(CostlyDossier(facts.dossier_no, facts.procedure_code, verdict.standing,
                                            verdict.why or verdict.standing))
        received = [f for f in group if f.received_at >= period.start]
        fees = [f for f in group if f.has_fees]
        found.append(AgencyIndex(
            agency_code=code, agency_name=group[-1].agency_name, judged=len(group), in_time=in_time,
            points=_points(POINTS_FOR_ON_TIME, in_time, len(group)), received=len(received),
            received_online=sum(1 for f in received if f.channel == "online"), with_fees=len(fees),
            paid_online=sum(1 for f in fees if f.dossier_no in paid_online),
            costly=tuple(sorted(costly, key=lambda c: c.dossier_no))))
    return tuple(found)
