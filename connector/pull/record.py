"""The record published on ``portal.submissions`` for one revision (``submission-received.v1``), pure: which
files travel inline and which are kept aside (``plan_inline``), the record built and checked against its
schema (``submission_document``), its digest and message id. Parsing what the portal sends is
``connector.pull.national``.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

import jsonschema_rs

from connector.config import SCHEMAS_DIR
from connector.contracts import DOSSIER_NO, Contract, first_error
from connector.national_time import PORTAL_TZ
from connector.pull.national import (
    DEFAULT_LIMITS,
    ENVELOPE_ALLOWANCE,
    MAX_REVISION,
    MAX_STORED_PATH_BYTES,
    ONE_LINE_FORBIDDEN,
    PLAN_SLACK,
    DeclaredFile,
    Holder,
    InvalidSubmission,
    Limits,
    NationalSubmission,
    base64_length,
    check_file,
    encoded_length,
    refuse,
)
from connector.push.events import vocabulary
from connector.push.mapping import Mappings

EVENT_TYPE = "submission.received"
SUBMISSION_NAMESPACE = uuid.UUID("ddb36c79-993e-5fe2-9ce3-023fa153df6b")
SUBMISSION_SCHEMA = SCHEMAS_DIR / "events" / "submission-received.v1.schema.json"

# --- the published record ---------------------------------------------------------------------------------


def _entry(declared: DeclaredFile) -> dict[str, Any]:
    return {"id": declared.id, "name": declared.name, "component_code": declared.component_code,
            "size": declared.size, "sha256": declared.sha256}


_INLINE_COST = len(',"content_base64":""')
_STORED_COST = len(',"path":""') + MAX_STORED_PATH_BYTES


def plan_inline(files: Sequence[tuple[DeclaredFile, bytes]], limits: Limits, *,
                submission: NationalSubmission | None = None) -> list[bool]:
    """Which files travel inside the record (True) and which go to the attachments store (False).

    A file goes inline only when it is at most ``max_inline_bytes`` and the record, with its base64 (4/3 of
    the size) and everything else, stays within ``max_record_bytes``. Smallest files first (ties in the
    given order), so as many as possible travel inline; the same input always gives the same plan.

    The rest of the record is counted exactly when ``submission`` is given; otherwise a margin covers the
    largest national record ``parse_submission`` lets through (``Limits.max_national_bytes``), twice (the
    record carries it and a copy of its values), which leaves less room for files."""
    count = len(files)
    if submission is not None:
        used = _skeleton_bytes(submission, [declared for declared, _ in files]) + PLAN_SLACK
    else:
        used = (2 * limits.max_national_bytes + ENVELOPE_ALLOWANCE
                + sum(encoded_length(_entry(declared)) + 1 for declared, _ in files))
    used += _STORED_COST * count
    plan = [False] * count
    for index in sorted(range(count), key=lambda i: (len(files[i][1]), i)):
        size = len(files[index][1])
        if size > limits.max_inline_bytes:
            break
        extra = _INLINE_COST + base64_length(size) - _STORED_COST
        if used + extra > limits.max_record_bytes:
            break
        used += extra
        plan[index] = True
    return plan


def _reverse(table: Mapping[str, str], national: str | None, allowed: frozenset[str]) -> str | None:
    """The local code that maps to ``national``, among the schema's vocabulary; the smallest if several."""
    if national is None:
        return None
    matches = sorted(local for local, code in table.items() if code == national and local in allowed)
    return matches[0] if matches else None


def _local_procedure(mappings: Mappings, national_code: str) -> str | None:
    matches = sorted(local for local, procedure in mappings.procedures.items()
                     if procedure.national_code == national_code)
    return matches[0] if matches else None


def _id_number(holder: Holder, local_type: str | None, identity_types: Mapping[str, str]) -> str | None:
    if not holder.identities:
        return None
    wanted = identity_types.get(local_type) if local_type is not None else None
    for identity in holder.identities:
        if identity.kind == wanted:
            return identity.number
    return holder.identities[0].number


def _build(sub: NationalSubmission, documents: list[dict[str, Any]], *, received_via: str, occurred_at: str,
           local_procedure_code: str | None, result_delivery: str | None, applicant_type: str | None,
           id_number: str | None) -> dict[str, Any]:
    holder = sub.holder
    return {
        "schema_version": 1,
        "event_id": str(uuid.uuid5(SUBMISSION_NAMESPACE, f"{sub.no}:{sub.revision}")),
        "event_type": EVENT_TYPE,
        "occurred_at": occurred_at,
        "source": "dvcqg",
        "received_via": received_via,
        "submission": {
            "no": sub.no,
            "revision": sub.revision,
            "procedure_code": sub.procedure_code,
            "local_procedure_code": local_procedure_code,
            "agency_code": sub.agency_code,
            "submitted_at": sub.submitted_at.astimezone(PORTAL_TZ).isoformat(),
            "status": sub.status,
            "channel": "online",
            "result_delivery": result_delivery,
            "applicant": {
                "type": applicant_type,
                "name": holder.name,
                "id_number": id_number,
                "phone": holder.phone,
                "email": holder.email,
                "portal_account_id": holder.portal_account_id,
                "address": holder.address,
            },
            "summary": sub.summary,
            "documents": documents,
        },
        "national": sub.raw,
    }


def _skeleton_bytes(sub: NationalSubmission, declared: Sequence[DeclaredFile]) -> int:
    """An upper bound of the encoded record with no file content and no path: the codes that depend on the
    mappings and the clock at their longest."""
    longest_id = max((identity.number for identity in sub.holder.identities), key=encoded_length, default=None)
    skeleton = _build(sub, [_entry(d) for d in declared], received_via="poll",
                      occurred_at="2000-01-01T00:00:00.000000+00:00", local_procedure_code="X" * 64,
                      result_delivery="counter", applicant_type="organization", id_number=longest_id)
    return encoded_length(skeleton)


def submission_document(sub: NationalSubmission, files: Sequence[tuple[DeclaredFile, bytes, str | None]], *,
                        received_via: Literal["poll", "push"], received_at: datetime,
                        mappings: Mappings) -> dict[str, Any]:
    """The ``submission.received`` record. ``files``: each of ``sub.files`` in order, with its content and the
    path the attachments store holds it at, or None to carry it inline. Checked against the schema (raises
    InvalidSubmission). The record shares ``sub.raw`` as its "national" member: encode it, do not change it."""
    if received_via not in ("poll", "push"):
        refuse("received_via", 'must be "poll" or "push"', "bad_format")
    if received_at.utcoffset() is None:
        refuse("received_at", "must carry a time zone", "bad_format")
    if len(files) != len(sub.files) or any(d.id != s.id for (d, _, _), s in zip(files, sub.files, strict=False)):
        refuse("documents", "must be the submission's files, in order", "files_mismatch")
    documents = []
    for index, (declared, content, path) in enumerate(files):
        entry = _entry(declared)
        if len(content) != declared.size:
            refuse(f"documents[{index}].size", "must equal the size of the content", "file_size_mismatch")
        if path is None:
            check_file(declared, content, field=f"documents[{index}]")
            entry["content_base64"] = binascii.b2a_base64(content, newline=False).decode("ascii")
        else:
            if (not isinstance(path, str) or not path or ONE_LINE_FORBIDDEN.search(path)
                    or encoded_length(path) - 2 > MAX_STORED_PATH_BYTES):
                refuse(f"documents[{index}].path", f"must be 1-{MAX_STORED_PATH_BYTES} bytes without control "
                      "characters", "bad_path")
            entry["path"] = path
        documents.append(entry)
    codes = mappings.codes
    words = vocabulary()
    applicant_type = _reverse(codes.applicant_types, sub.holder.type_code, words["applicant_types"])
    document = _build(
        sub, documents, received_via=received_via, occurred_at=received_at.isoformat(),
        local_procedure_code=_local_procedure(mappings, sub.procedure_code),
        result_delivery=_reverse(codes.result_delivery, sub.result_delivery_code, words["result_delivery"]),
        applicant_type=applicant_type,
        id_number=_id_number(sub.holder, applicant_type, codes.identity_types),
    )
    validate_document(document)
    return document


# Python's reading of patterns, and the fast validator's refusal standing where the two differ.
CONTRACT = Contract(SUBMISSION_SCHEMA, ecma_patterns=False, refuse_disagreement=True)


def _validator() -> Any:
    return CONTRACT.reference


def _fast_validator() -> jsonschema_rs.Validator:
    return CONTRACT.fast


def validate_document(document: Any) -> None:
    """Raise InvalidSubmission (reason ``schema``) unless ``document`` is a valid ``submission.received``
    record: the schema, the event id derived from the number and revision, inline contents of the declared
    size."""
    errors = CONTRACT.errors(document)
    if errors:
        field, broken = first_error(errors)
        raise InvalidSubmission(broken, reason="schema", field=field)
    sub = document["submission"]
    if document["event_id"] != str(uuid.uuid5(SUBMISSION_NAMESPACE, f"{sub['no']}:{sub['revision']}")):
        refuse("event_id", "must be the UUID v5 of the submission's number and revision", "schema")
    for index, entry in enumerate(sub["documents"]):
        if "content_base64" in entry and len(entry["content_base64"]) != base64_length(entry["size"]):
            refuse(f"submission.documents.{index}.content_base64", "must be the base64 of size bytes", "schema")


def content_digest(sub: NationalSubmission) -> str:
    """SHA-256 (hex) of what the citizen submitted, whatever carried it: the values read from the record and
    each file's id, name, component, size and SHA-256. A push (files inline) and a ``TraCuuHoSo`` record
    (files by path) of the same submission agree; members the record carries but this service does not read
    do not count. Two bodies of one number and revision with different digests are a conflict."""
    h = sub.holder
    content = [sub.no, sub.revision, sub.agency_code, sub.procedure_code, sub.submitted_at.isoformat(), sub.status,
               [h.name, h.type_code, [list(i) for i in h.identities], h.phone, h.email, h.portal_account_id,
                h.address], sub.result_delivery_code, sub.summary,
               [[f.id, f.name, f.component_code, f.size, f.sha256] for f in sub.files]]
    text = json.dumps(content, ensure_ascii=False, separators=(",", ":"))  # parsed values: encodable text
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def message_id(no: str, revision: int) -> str:
    """The outbox id of a revision's record: ``submission:<no>:<revision>``."""
    if not isinstance(no, str) or not DOSSIER_NO.fullmatch(no):
        refuse("no", "must be 3-100 characters of 0-9 A-Z a-z . - _ /", "bad_format")
    if isinstance(revision, bool) or not isinstance(revision, int) or not 0 <= revision <= MAX_REVISION:
        refuse("revision", f"must be an integer between 0 and {MAX_REVISION}", "out_of_range")
    return f"submission:{no}:{revision}"


def encode_document(document: Mapping[str, Any], limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Compact UTF-8 JSON; InvalidSubmission (``record_too_large``) over ``limits.max_record_bytes``."""
    try:
        value = json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        refuse("(document)", "must be plain JSON with valid Unicode text", "unencodable")
    if len(value) > limits.max_record_bytes:
        refuse("(document)", f"the encoded record must be at most {limits.max_record_bytes} bytes "
              "(max_record_bytes)", "record_too_large")
    return value


__all__ = [
    "EVENT_TYPE",
    "SUBMISSION_NAMESPACE",
    "content_digest",
    "encode_document",
    "message_id",
    "plan_inline",
    "submission_document",
    "validate_document",
]
