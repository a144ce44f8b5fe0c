"""Dossier facts (pure): what statistics need of each dossier, folded from every event in version order.

Each event is read into an ``EventFacts`` when it is admitted (before a lane coalesces full records), and the
unit folds them, oldest first, into the dossier's ``DossierFacts``, written with the ledger. How each fact is
derived from the v1 event contract:

- agency, procedure, field (the procedure's, from mappings), channel, reception: the newest event's.
- original due time: the first ``due_at`` seen; ``due_at`` null: the procedure's time limit from the reception.
- national status: the event's status / sub-status through the deployment's status table (PORTAL.md §2).
- end: the first event whose national status is an end state (3 refused, 7 withdrawn, 8 stopped, 9 processed,
  10 returned) ends the dossier: at ``finished_at`` when given, a withdrawal at ``withdrawn_at``, otherwise at the
  event's time (a step's ``at``, else ``occurred_at``). A later event that leaves the end state (reopened) clears
  it. ``returned_at`` is kept too.
- refused at the desk (counts nowhere) or after examination: ``refusal`` when given; otherwise the sub-status
  ``refused_at_counter``, or a refusal of a dossier never seen accepted, is at the desk.
- supplements: ``supplements[]`` when the event carries them (full state); otherwise every transition into
  national status 5 (supplement requested) is a request at the event's time, and the transition out of it
  completes it.
- fees: whether the dossier has a fee or charge above zero. Paid online is not an event fact: the daemon's own
  Payment Platform outcomes (the ``payments`` table, state confirmed) say it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from connector.push.events import DossierEvent
from connector.stats.deadlines import Clock

SUPPLEMENT_REQUESTED = 5
REFUSED, WITHDRAWN, STOPPED, PROCESSED, RETURNED = 3, 7, 8, 9, 10
END_STATES = frozenset({REFUSED, WITHDRAWN, STOPPED, PROCESSED, RETURNED})
ACCEPTED_STATES = frozenset({2, 4, 5, 6, 8, 9, 10})
TERMINALS = {REFUSED: "refused", WITHDRAWN: "withdrawn", STOPPED: "stopped", PROCESSED: "processed",
             RETURNED: "returned"}


@dataclass(frozen=True, slots=True)
class EventFacts:
    """What one event says for statistics (kept while the event waits in flight: small)."""

    version: int
    at: datetime  # when it happened: the step's time, else the event's
    national_status: int
    sub_status: str | None
    agency_code: str
    agency_name: str
    procedure_code: str
    field_code: str
    channel: str
    received_at: datetime
    due_at: datetime | None  # the event's, or from the procedure's time limit
    due_from_limit: bool
    finished_at: datetime | None
    returned_at: datetime | None
    withdrawn_at: datetime | None
    refusal: str | None
    has_fees: bool
    supplements: tuple[tuple[datetime, datetime | None], ...] | None


def event_facts(event: DossierEvent, *, national_status: int, field_code: str, due_at: datetime | None,
                due_from_limit: bool) -> EventFacts:
    d = event.dossier
    return EventFacts(
        version=d.version, at=event.step.at if event.step is not None else event.occurred_at,
        national_status=national_status, sub_status=d.sub_status, agency_code=d.agency_code,
        agency_name=d.agency_name, procedure_code=d.procedure_code, field_code=field_code, channel=d.channel,
        received_at=d.received_at, due_at=due_at, due_from_limit=due_from_limit, finished_at=d.finished_at,
        returned_at=d.returned_at, withdrawn_at=d.withdrawn_at, refusal=d.refusal,
        has_fees=any(fee.amount > 0 for fee in d.fees),
        supplements=None if d.supplements is None else tuple((s.requested_at, s.completed_at)
                                                             for s in d.supplements))


@dataclass(frozen=True, slots=True)
class DossierFacts:
    """One dossier, as statistics see it (one row of ``dossier_facts``)."""

    dossier_no: str
    version: int  # the newest event folded in
    agency_code: str
    agency_name: str
    procedure_code: str
    field_code: str
    channel: str
    received_at: datetime
    due_at: datetime | None  # the original one
    due_from_limit: bool  # no due date on the events: from the procedure's time limit
    national_status: int  # the newest
    terminal: str | None  # processed / returned / stopped / withdrawn / refused / refused_at_desk
    ended_at: datetime | None
    returned_at: datetime | None
    supplement_requests: int
    supplement_requested_at: datetime | None  # the first request
    supplement_completed_at: datetime | None  # its completion
    second_supplement_at: datetime | None
    has_fees: bool
    ever_accepted: bool

    @property
    def counted(self) -> bool:
        """Whether it counts in statistics at all: a dossier refused at the desk was never accepted."""
        return self.terminal != "refused_at_desk"

    @property
    def clock(self) -> Clock:
        return Clock(self.due_at, self.ended_at, self.supplement_requested_at, self.supplement_completed_at,
                     self.second_supplement_at)


def fold(previous: DossierFacts | None, no: str, event: EventFacts) -> DossierFacts:
    """``previous`` with ``event`` applied. An event at or below the folded version changes nothing."""
    if previous is not None and event.version <= previous.version:
        return previous
    status = event.national_status
    was_status = previous.national_status if previous is not None else None
    accepted = (previous is not None and previous.ever_accepted) or status in ACCEPTED_STATES
    facts = DossierFacts(
        dossier_no=no, version=event.version, agency_code=event.agency_code, agency_name=event.agency_name,
        procedure_code=event.procedure_code, field_code=event.field_code, channel=event.channel,
        received_at=event.received_at,
        due_at=previous.due_at if previous is not None and previous.due_at is not None else event.due_at,
        due_from_limit=previous.due_from_limit if previous is not None and previous.due_at is not None
        else event.due_from_limit,
        national_status=status,
        terminal=previous.terminal if previous is not None else None,
        ended_at=previous.ended_at if previous is not None else None,
        returned_at=event.returned_at,
        supplement_requests=previous.supplement_requests if previous is not None else 0,
        supplement_requested_at=previous.supplement_requested_at if previous is not None else None,
        supplement_completed_at=previous.supplement_completed_at if previous is not None else None,
        second_supplement_at=previous.second_supplement_at if previous is not None else None,
        has_fees=event.has_fees, ever_accepted=accepted,
    )
    facts = _supplements(facts, event, was_status)
    return _end(facts, event, ever_accepted_before=previous is not None and previous.ever_accepted)


def _supplements(facts: DossierFacts, event: EventFacts, was_status: int | None) -> DossierFacts:
    if event.supplements is not None:
        rounds = sorted(event.supplements, key=lambda r: r[0])
        return replace(facts, supplement_requests=len(rounds),
                       supplement_requested_at=rounds[0][0] if rounds else None,
                       supplement_completed_at=rounds[0][1] if rounds else None,
                       second_supplement_at=rounds[1][0] if len(rounds) > 1 else None)
    asked = event.national_status == SUPPLEMENT_REQUESTED
    was_asked = was_status == SUPPLEMENT_REQUESTED
    if asked and not was_asked:
        count = facts.supplement_requests + 1
        if count == 1:
            return replace(facts, supplement_requests=1, supplement_requested_at=event.at)
        if count == 2:
            return replace(facts, supplement_requests=2, second_supplement_at=event.at)
        return replace(facts, supplement_requests=count)
    if was_asked and not asked and facts.supplement_requests == 1 and facts.supplement_completed_at is None:
        return replace(facts, supplement_completed_at=event.at)
    return facts


def _end(facts: DossierFacts, event: EventFacts, *, ever_accepted_before: bool) -> DossierFacts:
    status = event.national_status
    if status not in END_STATES:
        # Reopened (or never ended): in progress again.
        return replace(facts, terminal=None, ended_at=None) if facts.terminal is not None else facts
    terminal = TERMINALS[status]
    if status == REFUSED:
        at_desk = (event.refusal == "at_desk" if event.refusal is not None
                   else event.sub_status == "refused_at_counter" or not ever_accepted_before)
        terminal = "refused_at_desk" if at_desk else "refused"
    if facts.terminal is not None and facts.ended_at is not None:
        # Still ended (processed → returned keeps the end of processing, the portal's first choice).
        if event.finished_at is not None and terminal != "withdrawn":
            return replace(facts, terminal=terminal, ended_at=max(event.finished_at, facts.received_at))
        return replace(facts, terminal=terminal)
    if terminal == "withdrawn":
        end = event.withdrawn_at or event.finished_at or event.at
    else:
        end = event.finished_at or event.at
    # A bad clock upstream must not put the end before the reception (it would vanish from every period).
    return replace(facts, terminal=terminal, ended_at=max(end, facts.received_at))


_ROW_FIELDS = tuple(f for f in DossierFacts.__dataclass_fields__ if f != "dossier_no")


def facts_row(facts: DossierFacts) -> dict[str, Any]:
    """The ``dossier_facts`` row of ``facts`` (without ``updated_at``, which the store stamps)."""
    return {"dossier_no": facts.dossier_no, **{name: getattr(facts, name) for name in _ROW_FIELDS}}


def facts_from_row(row: Mapping[str, Any]) -> DossierFacts:
    """The facts a ``dossier_facts`` row holds, as the store reads them back (aware times)."""
    return DossierFacts(**{name: row[name] for name in ("dossier_no", *_ROW_FIELDS)})
