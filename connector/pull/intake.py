"""Accepting a submission revision, polled or pushed: checked, its files kept, its record written to the
outbox in the transaction that marks the revision met; conflicts between two bodies kept for the portal to
settle. The life of a revision, poll and push, is told in ``connector.pull.poller``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import structlog

from connector.config import Settings
from connector.errors import SyncError
from connector.observability import Metrics
from connector.outbox.relay import OutboxRelay, outbox_message
from connector.pull.attachments import AttachmentStore
from connector.pull.national import DeclaredFile, InvalidSubmission, Limits, NationalSubmission, parse_submission
from connector.pull.record import (
    EVENT_TYPE,
    content_digest,
    encode_document,
    message_id,
    plan_inline,
    submission_document,
)
from connector.push.mapping import Mappings
from connector.store.way_back import InboundStore, OutboxMessage, SubmissionKey

log = structlog.get_logger(__name__)

Via = Literal["poll", "push"]
DUPLICATE = "duplicate: this revision was received before"
CONFLICT = "conflicts with an earlier push of this revision; it is being confirmed with the portal"
REFUSED = "differs from the portal's record of this revision, confirmed before; refused"

def limits_of(settings: Settings) -> Limits:
    s = settings.submissions
    return Limits(max_inline_bytes=s.max_inline_bytes, max_file_bytes=s.max_file_bytes,
                  max_dossier_bytes=s.max_dossier_bytes, max_record_bytes=s.max_record_bytes,
                  max_files=s.max_files)


def max_pushed_body_bytes(limits: Limits) -> int:
    """The largest inbound push worth reading: every file at its limit, in base64, and room for the rest."""
    return limits.max_dossier_bytes * 4 // 3 + 1024 * 1024


class SubmissionIntake:
    """Turns a national submission into an accepted revision (its record owed to the topic), or a rejection."""

    def __init__(self, settings: Settings, mappings: Mappings, inbound: InboundStore, relay: OutboxRelay,
                 attachments: AttachmentStore, metrics: Metrics,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._settings = settings
        self._mappings = mappings
        self._inbound = inbound
        self._relay = relay
        self._attachments = attachments
        self._metrics = metrics
        self._clock = clock
        self.limits = limits_of(settings)
        # Set when there is something for the lease holder's follow-up to do (a revision to acknowledge once
        # published, a conflict to confirm); the follow-up also looks every poll interval.
        self.follow_up_due = asyncio.Event()

    async def accept_pushed(self, body: Any) -> tuple[int, str]:
        """The inbound push: 0 accepted, 1 met before, -1 refused (the message names the field and the rule)."""
        try:
            submission = parse_submission(body, inline=True, limits=self.limits)
        except InvalidSubmission as error:
            # Recorded against its revision when the record named it validly; counted and logged in any case.
            if error.dossier_no is not None and error.revision is not None:
                key = SubmissionKey(error.dossier_no, error.revision)
                await self.reject(key, "push", _agency_of(body), error)
            else:
                self._metrics.submissions.labels("push", "rejected", error.reason).inc()
                log.warning("submission.rejected", via="push", reason=error.reason, field=error.field)
            return -1, str(error)
        key = SubmissionKey(submission.no, submission.revision)
        known = (await self._inbound.submission_states([key])).get(key)
        if known is not None and known.state != "rejected":
            return await self.met_before(submission, "push")
        files = [(declared, declared.content or b"") for declared in submission.files]
        try:
            accepted = await self.accept(submission, files, "push")
        except InvalidSubmission as error:
            await self.reject(key, "push", submission.agency_code, error)
            return -1, str(error)
        if not accepted:
            return await self.met_before(submission, "push")
        return 0, "created"

    async def met_before(self, submission: NationalSubmission, via: Via) -> tuple[int, str]:
        """A body for a revision accepted before: the same content is a duplicate (1); another is a conflict
        (-1), kept and withheld for the portal to settle, or refused when the portal confirmed the revision's
        content before."""
        key = SubmissionKey(submission.no, submission.revision)
        met = await self._inbound.record_conflict(
            key, content_sha256=content_digest(submission), received_via=via,
            national_json=json.dumps(submission.raw, ensure_ascii=False), now=self._clock())
        if met == "duplicate":
            self._metrics.submissions.labels(via, "duplicate", "").inc()
            return 1, DUPLICATE
        if met == "absent":  # accepted a moment ago and gone since: nothing to compare with
            return -1, "this revision could not be compared with the one received before; please send it again"
        self._metrics.submissions.labels(via, "conflict", "").inc()
        if met in ("conflict", "refused"):
            self._metrics.inbound_conflicts.labels("detected").inc()
            # Digests and rules only: the bodies hold a citizen's identity.
            log.warning("submission.conflict", via=via, dossier=key.dossier_no, revision=key.revision,
                        rule="same number and revision, different content")
        if met == "refused":
            self._metrics.inbound_conflicts.labels("settled_portal").inc()
        if met in ("refused", "refused_known"):
            return -1, REFUSED
        self.follow_up_due.set()
        return -1, CONFLICT

    async def accept(self, submission: NationalSubmission, files: Sequence[tuple[DeclaredFile, bytes]],
                     via: Via) -> bool:
        """Store large files, build the record, and accept the revision with it; False when it was accepted
        before. Raises InvalidSubmission (a record over the broker's limit, a file that does not hash)."""
        message, stored_apart = await self.record_for(submission, files, via)
        key = SubmissionKey(submission.no, submission.revision)
        accepted = await self._inbound.accept_submission(
            key, received_via=via, agency_code=submission.agency_code, submitted_at=submission.submitted_at,
            message=message, now=message.created_at, content_sha256=content_digest(submission),
            confirmed=via == "poll")
        if accepted:
            self._relay.wake()
            self.follow_up_due.set()
            self._metrics.submissions.labels(via, "accepted", "").inc()
            log.info("submission.accepted", via=via, dossier=submission.no, revision=submission.revision,
                     files=len(files), stored_apart=stored_apart)
        return accepted

    async def record_for(self, submission: NationalSubmission, files: Sequence[tuple[DeclaredFile, bytes]],
                         via: Via) -> tuple[OutboxMessage, int]:
        """The message that publishes the revision, large files stored apart first; and how many were.
        Raises InvalidSubmission."""
        plan = plan_inline(files, self.limits, submission=submission)
        placed: list[tuple[DeclaredFile, bytes, str | None]] = []
        for (declared, content), inline in zip(files, plan, strict=True):
            path: str | None = None
            if not inline:
                stored = await asyncio.to_thread(self._attachments.put, content, sha256=declared.sha256)
                path = str(stored)
                self._metrics.attachments_stored.inc()
            placed.append((declared, content, path))
        now = self._clock()
        document = submission_document(submission, placed, received_via=via, received_at=now,
                                       mappings=self._mappings)
        value = encode_document(document, self.limits)
        message = outbox_message(message_id(submission.no, submission.revision),
                                 self._settings.kafka.topics.submissions, submission.no, value,
                                 event_type=EVENT_TYPE, now=now)
        return message, sum(1 for _, _, p in placed if p is not None)

    async def reject(self, key: SubmissionKey, via: Via, agency_code: str | None, error: SyncError) -> None:
        self._metrics.submissions.labels(via, "rejected", error.reason).inc()
        # The field and the rule; never the value (it may be an ID number or a phone).
        log.warning("submission.rejected", via=via, dossier=key.dossier_no, revision=key.revision,
                    reason=error.reason, field=error.field)
        await self._inbound.reject_submission(key, received_via=via, agency_code=agency_code, reason=error.reason,
                                              field=error.field, message=error.message, now=self._clock())


def _agency_of(body: Any) -> str | None:
    agency = body.get("DonViXuLy") if isinstance(body, dict) else None
    return agency if isinstance(agency, str) and len(agency) <= 64 else None


__all__ = ["SubmissionIntake", "Via", "limits_of", "max_pushed_body_bytes"]
