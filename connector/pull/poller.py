"""The way back for citizen submissions: national portal → ``portal.submissions``, once per revision.

Two ways in, one way out:

- **Poll** (``SubmissionPoller``): every ``poll_interval``, ``DanhSachHoSo`` for each agency over the days from
  the stored cursor minus an overlap (the portal lists some submissions late) to today. Each revision not met
  before is fetched (``TraCuuHoSo``) with its files (``LayTaiLieuHoSo``), checked, and accepted; then the
  outbox relay publishes what was accepted, and only once the broker holds it is the portal told
  (``CapNhatDaNhanHoSo``) and the cursor moved.
- **Inbound push** (``SubmissionIntake.accept_pushed``): the national side posts a dossier, files inline.

Accepting a revision writes its record to the outbox in the same transaction that marks the revision met
(``InboundStore.accept_submission``), so re-polls, overlapping windows, re-posts and restarts publish
nothing twice. A revision that fails validation is recorded as rejected, with the field and the rule, and
is not acknowledged to the portal.

The same body again (same ``content_digest``) is a harmless duplicate. A *different* body for a number and
revision already accepted is a conflict, never "first one wins": both are kept, the revision's message is
withheld if the relay has not taken it yet, the pusher is told ``-1``, and the lease holder asks the portal
(``TraCuuHoSo``, in ``SubmissionPoller.follow_up`` at once, or at the next round) and publishes what the portal
holds, whichever body that is. A revision already on the topic stays as it is when the portal confirms it;
when the portal holds another body the conflict is left ``unsettled`` for an operator
(``portal-sync submissions list --conflicts``): a published revision cannot be taken back.

Every published revision, polled or pushed, is acknowledged (``CapNhatDaNhanHoSo``) once the broker holds it;
one in conflict only once the portal settled it.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import structlog

from connector.config import Settings
from connector.errors import SyncError
from connector.national_time import PORTAL_TZ
from connector.observability import Metrics
from connector.outbox.relay import OutboxRelay, outbox_message
from connector.portal.client import ACKNOWLEDGE_SUBMISSION, FETCH_FILE, LIST_SUBMISSIONS, LOOKUP, PortalClient
from connector.portal.gateway import PortalGateway
from connector.pull.attachments import AttachmentStore
from connector.pull.national import (
    EVENT_TYPE,
    DeclaredFile,
    InvalidSubmission,
    Limits,
    Listed,
    NationalSubmission,
    check_file,
    content_digest,
    decode_file_reply,
    encode_document,
    message_id,
    parse_listing,
    parse_submission,
    plan_inline,
    submission_document,
)
from connector.push.mapping import Mappings
from connector.retry import wait_any
from connector.store.way_back import InboundStore, OpenConflict, OutboxMessage, SubmissionKey

log = structlog.get_logger(__name__)

Via = Literal["poll", "push"]
MAX_PAGES = 10_000  # a bound on one window's listing, whatever the adapter answers
FILE_REPLY_MARGIN = 64 * 1024
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


@dataclass
class PollReport:
    agency: str
    first_day: date
    last_day: date
    listed: int = 0
    accepted: int = 0
    met_before: int = 0
    rejected: int = 0
    acknowledged: int = 0
    unfinished: int = 0  # could not be fetched this time (the portal's errors): the cursor stays
    listing_problems: int = 0
    cursor_moved_to: date | None = None
    errors: list[str] = field(default_factory=list)


class SubmissionPoller:
    def __init__(self, settings: Settings, intake: SubmissionIntake, inbound: InboundStore, relay: OutboxRelay,
                 portal: PortalClient, gateway: PortalGateway, metrics: Metrics,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._settings = settings
        self._intake = intake
        self._inbound = inbound
        self._relay = relay
        self._portal = portal
        self._gateway = gateway
        self._metrics = metrics
        self._clock = clock

    @property
    def agencies(self) -> tuple[str, ...]:
        return self._settings.submissions.agencies or (self._settings.portal.madonvi,)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll every agency every ``poll_interval_seconds`` until ``stop``; a failed poll is tried again at
        the next interval (nothing advanced)."""
        interval = self._settings.submissions.poll_interval_seconds
        while not stop.is_set():
            for agency in self.agencies:
                try:
                    await self.poll(agency)
                except Exception as error:  # noqa: BLE001 - the next poll starts again from the cursor
                    self._metrics.submission_polls.labels("failed").inc()
                    log.warning("submissions.poll_failed", agency=agency, error=type(error).__name__,
                                reason=getattr(error, "reason", None))
            await wait_any(stop, seconds=interval)

    async def poll(self, agency: str) -> PollReport:
        """One poll of one agency: list, fetch and accept what is new, publish, acknowledge, move the cursor."""
        s = self._settings.submissions
        today = self._clock().astimezone(PORTAL_TZ).date()
        cursor_name = f"submissions:{agency}"
        stored = await self._inbound.cursor(cursor_name)
        cursor = _day(stored) if stored else None
        first = min(cursor or today, today) - timedelta(days=s.overlap_days)
        last = min(today, first + timedelta(days=s.max_window_days - 1))
        report = PollReport(agency, first, last)
        listed = await self._list(agency, first, last, report)
        report.listed = len(listed)
        known = await self._inbound.submission_states([SubmissionKey(i.no, i.revision) for i in listed])
        fresh = [i for i in listed if SubmissionKey(i.no, i.revision) not in known]
        report.met_before = len(listed) - len(fresh)
        slots = asyncio.Semaphore(s.concurrency)

        async def one(item: Listed) -> None:
            async with slots:
                await self._fetch_and_accept(item, report)

        await asyncio.gather(*(one(item) for item in fresh))
        await self.settle_conflicts()
        # The broker must hold a revision before the portal is told it arrived.
        await self._relay.publish_owed()
        report.acknowledged = await self.acknowledge_published()
        if report.unfinished == 0 and report.listing_problems == 0:
            moved = min(last + timedelta(days=1), today)
            await self._inbound.set_cursor(cursor_name, moved.isoformat(), self._clock())
            report.cursor_moved_to = moved
        self._metrics.submission_polls.labels("complete" if report.cursor_moved_to else "partial").inc()
        log.info("submissions.polled", agency=agency, first_day=first.isoformat(), last_day=last.isoformat(),
                 listed=report.listed, accepted=report.accepted, met_before=report.met_before,
                 rejected=report.rejected, acknowledged=report.acknowledged, unfinished=report.unfinished,
                 cursor=report.cursor_moved_to.isoformat() if report.cursor_moved_to else None)
        return report

    async def follow_up(self, stop: asyncio.Event) -> None:
        """On the lease holder, polling or not, until ``stop``: confirm conflicts with the portal, publish, and
        acknowledge every published revision; at once when the intake asks (``follow_up_due``), otherwise
        every ``poll_interval_seconds``. A failed round is tried again at the next."""
        interval = self._settings.submissions.poll_interval_seconds
        due = self._intake.follow_up_due
        while not stop.is_set():
            due.clear()
            try:
                await self.settle_conflicts()
                await self._relay.publish_owed()
                await self.acknowledge_published()
            except Exception as error:  # noqa: BLE001 - the broker, the store or the portal away: next round
                log.warning("submissions.follow_up_failed", error=type(error).__name__,
                            reason=getattr(error, "reason", None))
            await wait_any(stop, due, seconds=interval)

    async def settle_conflicts(self) -> int:
        """Ask the portal (``TraCuuHoSo``) about every revision in conflict and publish what it holds; return how
        many it settled. A portal that does not answer, or does not show the revision yet, leaves the conflict
        open for the next round; an answer that cannot settle it leaves it ``unsettled`` for an operator."""
        settled = 0
        for conflict in await self._inbound.open_conflicts(limit=100):
            key = conflict.key
            try:
                settled += await self._settle(conflict)
            except SyncError as error:
                log.warning("submission.conflict_unconfirmed", dossier=key.dossier_no, revision=key.revision,
                            reason=error.reason)
            except Exception as error:  # noqa: BLE001 - one revision's confirmation never stops the others
                log.error("submission.conflict_failed", dossier=key.dossier_no, revision=key.revision,
                          error=type(error).__name__)
        return settled

    async def _settle(self, conflict: OpenConflict) -> bool:
        key = conflict.key
        record = await self._gateway.request(LOOKUP, lambda: self._portal.submission(key.dossier_no))
        if record is None:
            log.info("submission.conflict_waiting", dossier=key.dossier_no, revision=key.revision,
                     rule="TraCuuHoSo has no record of this dossier yet")
            return False
        try:
            portal = parse_submission(record, inline=False, limits=self._intake.limits)
            if portal.no != key.dossier_no:
                return await self._unsettled(key, None, "TraCuuHoSo answered with another dossier's record")
            if portal.revision < key.revision:
                log.info("submission.conflict_waiting", dossier=key.dossier_no, revision=key.revision,
                         rule="TraCuuHoSo does not show this revision yet")
                return False
            if portal.revision > key.revision:
                return await self._unsettled(key, None, f"TraCuuHoSo shows revision {portal.revision} now: this "
                                             "revision can no longer be confirmed")
            digest = content_digest(portal)
            replacement: OutboxMessage | None = None
            if digest == conflict.content_sha256:
                note = "the portal's record is the body accepted first"
            elif conflict.withheld:
                files = [(declared, await self._fetch_file(declared, index))
                         for index, declared in enumerate(portal.files)]
                replacement, _ = await self._intake.record_for(portal, files, "poll")
                note = "the portal's record is published in place of the body accepted first (withheld)"
            else:
                return await self._unsettled(
                    key, digest, "the body accepted first is published already (or being sent) and the portal's "
                    "record differs from it: correct the one-stop system's copy by hand")
        except InvalidSubmission as error:
            return await self._unsettled(key, None, f"the portal's record is not usable: {error.field}: "
                                         f"{error.message}")
        if not await self._inbound.settle_conflict(key, portal_sha256=digest, note=note, now=self._clock(),
                                                   replacement=replacement):
            return False  # changed meanwhile: the next round looks again
        self._metrics.inbound_conflicts.labels("settled_portal").inc()
        log.info("submission.conflict_settled", dossier=key.dossier_no, revision=key.revision, rule=note)
        self._relay.wake()
        self._intake.follow_up_due.set()
        return True

    async def _unsettled(self, key: SubmissionKey, portal_sha256: str | None, note: str) -> bool:
        await self._inbound.leave_conflict_unsettled(key, portal_sha256=portal_sha256, note=note, now=self._clock())
        self._metrics.inbound_conflicts.labels("unsettled").inc()
        log.warning("submission.conflict_unsettled", dossier=key.dossier_no, revision=key.revision, rule=note)
        return False

    async def acknowledge_published(self) -> int:
        """Tell the portal about every revision the broker holds, polled or pushed; return how many were told."""
        done = 0
        while True:
            waiting = await self._inbound.unacknowledged(limit=500)
            if not waiting:
                return done
            told: list[SubmissionKey] = []
            for row in waiting:
                acknowledge = functools.partial(self._portal.acknowledge_submission, row.dossier_no, row.revision,
                                                None)
                try:
                    await self._gateway.request(ACKNOWLEDGE_SUBMISSION, acknowledge)
                except SyncError as error:
                    # Published and kept; told at the next poll.
                    log.warning("submission.acknowledge_failed", dossier=row.dossier_no, revision=row.revision,
                                reason=error.reason)
                    continue
                told.append(SubmissionKey(row.dossier_no, row.revision))
            await self._inbound.mark_acknowledged(told, self._clock())
            done_now = set(told)
            for row in waiting:
                if SubmissionKey(row.dossier_no, row.revision) in done_now:
                    self._metrics.submissions.labels(row.received_via, "acknowledged", "").inc()
            done += len(told)
            if len(told) < len(waiting):
                return done  # some refused: leave them for the next poll rather than loop on them now

    async def _list(self, agency: str, first: date, last: date, report: PollReport) -> list[Listed]:
        size = self._settings.submissions.page_size
        newest: dict[str, Listed] = {}
        for page in range(1, MAX_PAGES + 1):
            listing = functools.partial(self._portal.list_submissions, agency, first, last, page=page,
                                        page_size=size)
            result = await self._gateway.request(LIST_SUBMISSIONS, listing)
            try:
                items, problems = parse_listing(result)
            except InvalidSubmission as error:
                report.listing_problems += 1
                self._metrics.submissions.labels("poll", "rejected", error.reason).inc()
                log.warning("submissions.listing_refused", agency=agency, page=page, reason=error.reason,
                            field=error.field)
                break
            for problem in problems:
                report.listing_problems += 1
                self._metrics.submissions.labels("poll", "rejected", problem.reason).inc()
                log.warning("submissions.listing_item_refused", agency=agency, page=page, reason=problem.reason,
                            field=problem.field)
            for item in items:
                held = newest.get(item.no)
                if held is None or item.revision > held.revision:
                    newest[item.no] = item
            if not isinstance(result, list) or len(result) < size:
                break
        return list(newest.values())

    async def _fetch_and_accept(self, item: Listed, report: PollReport) -> None:
        key = SubmissionKey(item.no, item.revision)
        try:
            record = await self._gateway.request(LOOKUP, lambda: self._portal.submission(item.no))
            if record is None:
                raise InvalidSubmission("listed by DanhSachHoSo but TraCuuHoSo has no record of it",
                                        reason="submission_not_found", field="MaHoSo")
            submission = parse_submission(record, inline=False, limits=self._intake.limits)
            key = SubmissionKey(submission.no, submission.revision)
            if submission.no != item.no:
                raise InvalidSubmission("TraCuuHoSo answered with another dossier's record", reason="mismatch",
                                        field="MaHoSo")
            # Amended since it was listed: take the revision the portal holds now, unless met before.
            if submission.revision != item.revision and key in await self._inbound.submission_states([key]):
                report.met_before += 1
                return
            files = [(declared, await self._fetch_file(declared, index))
                     for index, declared in enumerate(submission.files)]
            if await self._intake.accept(submission, files, "poll"):
                report.accepted += 1
            else:
                # Pushed meanwhile: the same content, or a conflict this poll's settlement takes up.
                await self._intake.met_before(submission, "poll")
                report.met_before += 1
        except InvalidSubmission as error:
            report.rejected += 1
            await self._intake.reject(key, "poll", None, error)
        except SyncError as error:
            report.unfinished += 1
            report.errors.append(error.reason)
            log.warning("submission.fetch_failed", dossier=item.no, revision=item.revision, reason=error.reason)

    async def _fetch_file(self, declared: DeclaredFile, index: int) -> bytes:
        if declared.path is None:
            raise InvalidSubmission("has no path to fetch the file from", reason="file_path_missing",
                                    field=f"TaiLieuNop[{index}].DuongDanTaiTepTin")
        limits = self._intake.limits
        path = declared.path
        reply = await self._gateway.request(FETCH_FILE, lambda: self._portal.fetch_file(
            path, max_bytes=limits.max_file_bytes * 4 // 3 + FILE_REPLY_MARGIN))
        content = decode_file_reply(reply, limits)
        check_file(declared, content, field=f"TaiLieuNop[{index}]")
        return content


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _agency_of(body: Any) -> str | None:
    agency = body.get("DonViXuLy") if isinstance(body, dict) else None
    return agency if isinstance(agency, str) and len(agency) <= 64 else None


__all__ = ["PollReport", "SubmissionIntake", "SubmissionPoller", "limits_of", "max_pushed_body_bytes"]
