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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import structlog

from connector.config import Settings
from connector.errors import SyncError
from connector.national_time import PORTAL_TZ
from connector.observability import Metrics
from connector.outbox.relay import OutboxRelay
from connector.portal.client import ACKNOWLEDGE_SUBMISSION, FETCH_FILE, LIST_SUBMISSIONS, LOOKUP, PortalClient
from connector.portal.gateway import PortalGateway
from connector.pull.intake import SubmissionIntake
from connector.pull.national import (
    DeclaredFile,
    InvalidSubmission,
    Listed,
    check_file,
    decode_file_reply,
    parse_listing,
    parse_submission,
)
from connector.pull.record import content_digest
from connector.retry import wait_any
from connector.store.way_back import InboundStore, OpenConflict, OutboxMessage, SubmissionKey

log = structlog.get_logger(__name__)

MAX_PAGES = 10_000  # a bound on one window's listing, whatever the adapter answers
FILE_REPLY_MARGIN = 64 * 1024



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


__all__ = ["PollReport", "SubmissionPoller"]
