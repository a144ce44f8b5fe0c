"""Local dossier events: decoding, validation against the published schema, typed models.

The JSON Schema in ``connector/schemas/events/`` is the contract; it decides what is valid, and it alone lists the
allowed values of every enumeration. The dataclasses below are the typed view the rest of the code
reads, built only from events the schema accepted; they do not restate the schema's rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jsonschema
import jsonschema_rs

from connector.config import SCHEMAS_DIR
from connector.contracts import Contract, first_error, read_document
from connector.errors import InvalidInput
from connector.national_time import parse_rfc3339

DOSSIER_EVENT_SCHEMA = SCHEMAS_DIR / "events" / "dossier-event.v1.schema.json"



class InvalidEvent(InvalidInput):
    """An event that cannot be used as it is: bad bytes, schema violation, broken contract."""


class _Unusable(ValueError):
    """A value the schema's pattern admits but the calendar does not (February 30th, hour 24)."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(rule)
        self.field = field
        self.rule = rule


def _when(document: dict[str, Any], key: str, path: str) -> datetime:
    try:
        return parse_rfc3339(document[key])
    except ValueError as exc:
        raise _Unusable(f"{path}.{key}" if path else key, f"is not a real date and time ({exc})") from None


def _maybe_when(document: dict[str, Any], key: str, path: str) -> datetime | None:
    return _when(document, key, path) if document.get(key) is not None else None


@dataclass(slots=True)
class Applicant:
    type: str
    name: str
    id_number: str | None = None
    phone: str | None = None
    email: str | None = None
    portal_account_id: str | None = None


@dataclass(slots=True)
class Document:
    id: str
    name: str
    url: str
    component_code: str | None = None
    deleted: bool = False


@dataclass(slots=True)
class ResultDocument:
    id: str
    name: str
    url: str
    component_code: str | None = None


@dataclass(slots=True)
class Fee:
    code: str
    name: str
    amount: int
    kind: str
    method: str | None = None


@dataclass(slots=True)
class Dossier:
    no: str
    version: int
    procedure_code: str
    agency_code: str
    agency_name: str
    status: str
    channel: str
    result_delivery: str
    origin: str
    applicant: Applicant
    received_at: datetime
    due_at: datetime | None  # None: the procedure has no fixed term (its time limit in mappings decides)
    receipt_no: str | None = None
    # The one-stop system's own number of a dossier that started on the national portal (``no`` is then the
    # national one): sent back as MaHoSoDonVi.
    local_no: str | None = None
    sub_status: str | None = None
    summary: str | None = None
    note: str | None = None
    finished_at: datetime | None = None
    returned_at: datetime | None = None
    documents: tuple[Document, ...] = ()
    results: tuple[ResultDocument, ...] = ()
    fees: tuple[Fee, ...] = ()
    withdrawn_at: datetime | None = None
    refusal: str | None = None  # at_desk / after_examination
    supplements: tuple[Supplement, ...] | None = None  # None: not kept by the one-stop system


@dataclass(slots=True)
class Supplement:
    requested_at: datetime
    completed_at: datetime | None = None


@dataclass(slots=True)
class Step:
    actor: str
    title: str
    department: str
    at: datetime
    status: str
    note: str | None = None
    started_at: datetime | None = None
    due_at: datetime | None = None


@dataclass(slots=True)
class DossierEvent:
    schema_version: int
    event_id: str
    event_type: str
    occurred_at: datetime
    source: str
    dossier: Dossier
    step: Step | None = None


def event_from_document(document: dict[str, Any]) -> DossierEvent:
    """The typed view of a document the schema accepted (so every key and type is already right).

    Plain slotted dataclasses built by hand, about half the cost of validating models (the schema has
    already done the validating; only the calendar is checked here). Not frozen: a frozen dataclass
    sets each field through object.__setattr__, which costs more again. Nothing changes an event once
    built. Raises ``_Unusable``."""
    d = document["dossier"]
    a = d["applicant"]
    step = document.get("step")
    return DossierEvent(
        schema_version=int(document["schema_version"]),
        event_id=document["event_id"],
        event_type=document["event_type"],
        occurred_at=_when(document, "occurred_at", ""),
        source=document["source"],
        dossier=Dossier(
            no=d["no"], version=int(d["version"]), procedure_code=d["procedure_code"],
            agency_code=d["agency_code"], agency_name=d["agency_name"], status=d["status"],
            channel=d["channel"], result_delivery=d["result_delivery"], origin=d["origin"],
            applicant=Applicant(a["type"], a["name"], a.get("id_number"), a.get("phone"), a.get("email"),
                                a.get("portal_account_id")),
            received_at=_when(d, "received_at", "dossier"), due_at=_maybe_when(d, "due_at", "dossier"),
            receipt_no=d.get("receipt_no"), local_no=d.get("local_no"), sub_status=d.get("sub_status"),
            summary=d.get("summary"),
            note=d.get("note"), finished_at=_maybe_when(d, "finished_at", "dossier"),
            returned_at=_maybe_when(d, "returned_at", "dossier"),
            documents=tuple(Document(x["id"], x["name"], x["url"], x.get("component_code"),
                                     bool(x.get("deleted", False))) for x in d.get("documents") or ()),
            results=tuple(ResultDocument(x["id"], x["name"], x["url"], x.get("component_code"))
                          for x in d.get("results") or ()),
            fees=tuple(Fee(x["code"], x["name"], int(x["amount"]), x["kind"], x.get("method"))
                       for x in d.get("fees") or ()),
            withdrawn_at=_maybe_when(d, "withdrawn_at", "dossier"), refusal=d.get("refusal"),
            supplements=None if d.get("supplements") is None else tuple(
                Supplement(_when(x, "requested_at", f"dossier.supplements.{i}"),
                           _maybe_when(x, "completed_at", f"dossier.supplements.{i}"))
                for i, x in enumerate(d["supplements"])),
        ),
        step=None if step is None else Step(
            actor=step["actor"], title=step["title"], department=step["department"],
            at=_when(step, "at", "step"), status=step["status"], note=step.get("note"),
            started_at=_maybe_when(step, "started_at", "step"), due_at=_maybe_when(step, "due_at", "step"),
        ),
    )


# Patterns read as JSON Schema means them: a final "$" is the end of the text, so "G12-0001\n" is no code.
CONTRACT = Contract(DOSSIER_EVENT_SCHEMA)


def _schema() -> dict[str, Any]:
    return CONTRACT.schema


def _validator() -> Any:
    return CONTRACT.reference


def _fast_validator() -> jsonschema_rs.Validator:
    # The Rust validator checks a valid event about six times faster than any validator written in
    # Python; the reference validator still words every error.
    return CONTRACT.fast


def schema_errors(document: Any) -> list[jsonschema.ValidationError]:
    """Every way ``document`` breaks the event schema; empty when it is valid."""
    return CONTRACT.errors(document)


def vocabulary() -> dict[str, frozenset[str]]:
    """The local code lists the schema allows, which the deployment's code tables must cover."""
    dossier = _schema()["$defs"]["dossier"]["properties"]
    return {
        "applicant_types": frozenset(dossier["applicant"]["properties"]["type"]["enum"]),
        "result_delivery": frozenset(dossier["result_delivery"]["enum"]),
        "channels": frozenset(dossier["channel"]["enum"]),
        "fee_kinds": frozenset(dossier["fees"]["items"]["properties"]["kind"]["enum"]),
    }


def decode_event(key: bytes | None, value: bytes | None, *, max_bytes: int) -> DossierEvent:
    """Turn one Kafka record into a validated event, or raise InvalidEvent naming the field and the rule."""
    document = read_document(value, max_bytes=max_bytes, refusal=InvalidEvent)
    errors = schema_errors(document)
    if errors:
        field, broken = first_error(errors, whole="(event)")
        raise InvalidEvent(broken, reason="schema", field=field)
    try:
        event = event_from_document(document)
    except _Unusable as exc:
        raise InvalidEvent(exc.rule, reason="schema", field=exc.field) from None
    expected_key = event.dossier.no.encode("utf-8")
    if key != expected_key:
        # Per-dossier order rests on the key fixing the partition; a wrong key breaks it silently.
        raise InvalidEvent("the Kafka message key must equal dossier.no", reason="key_mismatch", field="(key)")
    return event

