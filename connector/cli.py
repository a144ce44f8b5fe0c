"""``portal-sync``: the command line. Thin: parse, load settings, hand over."""

from __future__ import annotations

import asyncio
import getpass
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import structlog
from rich.console import Console

from connector.config import DEFAULT_MAPPINGS_DIR, Settings, load_settings
from connector.errors import ConfigError
from connector.observability import configure_logging

if TYPE_CHECKING:
    from connector.store import FailureFilter, LedgerFilter, StateStore
    from connector.store.way_back import InboundStore

T = TypeVar("T")


_CONFIG = click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                       help="YAML settings file; PORTAL_SYNC__SECTION__KEY environment variables override it.")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")


def _settings(config_path: Path | None) -> Settings:
    try:
        return load_settings(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def _store_call(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run an operator command's work; a store that cannot be reached is a clear error, not a traceback."""
    from sqlalchemy.exc import DBAPIError

    from connector.store import StoreUnavailable

    try:
        return asyncio.run(work())
    except (StoreUnavailable, DBAPIError, OSError) as exc:
        raise click.ClickException(f"the state store cannot be reached ({type(exc).__name__})") from exc


def _with_store(url: str, work: Callable[[StateStore], Coroutine[Any, Any, T]], *, migrate: bool = True) -> T:
    """``work(store)`` on the state store at ``url``, opened and closed around it (see ``_store_call``)."""
    from connector.store import StateStore

    async def run() -> T:
        store = await StateStore.open(url, migrate=migrate)
        try:
            return await work(store)
        finally:
            await store.close()

    return _store_call(run)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="portal-sync")
def main() -> None:
    """Keeps the ministry's one-stop dossier system and the national public service portal in step."""
    # Warnings and worse, on stderr, for every command until it sets its own: a command's stdout is its
    # output (JSON for scripts), never a log line (the state store logs its migrations).
    configure_logging("warning", "auto", cache=False)


@main.command()
@_CONFIG
def run(config_path: Path | None) -> None:
    """Run the sync daemon until SIGTERM or SIGINT."""
    from connector.heap import settle_heap
    from connector.push.mapping import MappingsInvalid
    from connector.service import Service

    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    configure_logging(settings.log.level, settings.log.format)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with Service(settings) as service:
            settle_heap()
            await service.run(stop)

    try:
        asyncio.run(serve())
    except (MappingsInvalid, ConfigError) as exc:  # e.g. an admin token file that cannot be read
        raise click.ClickException(str(exc)) from exc
    except Exception:  # noqa: BLE001 - the outermost boundary: log it as a structured event, exit 1
        # Unfinished events were not committed; a supervisor restarts us and they are delivered again.
        structlog.get_logger(__name__).critical("daemon stopped by an unexpected error", exc_info=True)
        sys.exit(1)


@main.group()
def db() -> None:
    """The state store's schema."""


@db.command("upgrade")
@_CONFIG
def db_upgrade(config_path: Path | None) -> None:
    """Bring the state store to the newest schema revision (the daemon also does this at start)."""
    from connector.store import schema

    before, after = _with_store(_settings(config_path).state.url, lambda store: schema.upgrade(store.engine),
                                migrate=False)
    click.echo(f"state store at revision {after}" + ("" if before == after else f" (was {before or 'empty'})"))


@db.command("current")
@_CONFIG
def db_current(config_path: Path | None) -> None:
    """Print the state store's schema revision and the newest this version knows."""
    from connector.store import schema

    current = _with_store(_settings(config_path).state.url, lambda store: schema.current_revision(store.engine),
                          migrate=False)
    click.echo(f"state store revision: {current or 'none (empty)'}; newest: {schema.head_revision()}")


# ---------------------------------------------------------------------------------------------------------
# Operators' tools: failures and replay


def _failure_filters(command: Callable[..., None]) -> Callable[..., None]:
    for option in reversed((
        click.option("--dossier", help="Dossier number."),
        click.option("--service", help="Adapter service that refused (DongBoHoSoMC, CapNhatTienDoHoSoMC)."),
        click.option("--error-class", help="Error class, e.g. MappingError, PortalRejected."),
        click.option("--reason", help="Error reason, e.g. unmapped_procedure."),
        click.option("--since", help="Last failed at or after this ISO 8601 time (local time if no offset)."),
        click.option("--until", help="Last failed before this ISO 8601 time."),
        click.option("--state", "state", type=click.Choice(["open", "replayed", "resolved", "discarded", "all"]),
                     default=None, help="Failure state.  [default: open]"),
    )):
        command = option(command)
    return command


def _moment(text: str | None, name: str) -> datetime | None:
    from connector.operators.values import parse_moment

    try:
        return parse_moment(text) if text else None
    except ValueError:
        raise click.BadParameter("must be an ISO 8601 date or date-time, e.g. 2024-05-06T08:00",
                                 param_hint=name) from None


def _filter_from(ids: tuple[int, ...] = (), *, dossier: str | None, service: str | None, error_class: str | None,
                 reason: str | None, since: str | None, until: str | None, state: str | None) -> FailureFilter:
    from connector.store import FailureFilter

    return FailureFilter(ids=ids or None, dossier_no=dossier, service=service, error_class=error_class, reason=reason,
                         since=_moment(since, "--since"), until=_moment(until, "--until"),
                         states=FailureFilter.states_for(state, named=bool(ids)))


def _operator() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "operator"


@main.group()
def failures() -> None:
    """List, inspect and discard events that could not be synced."""


@failures.command("list")
@_failure_filters
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--after-id", type=click.IntRange(0), default=0, help="Page on from this failure id.")
@_CONFIG
@_JSON
def failures_list(config_path: Path | None, as_json: bool, limit: int, after_id: int, **filters: Any) -> None:
    """Failed events, oldest first (open ones unless --state says otherwise)."""
    from connector.operators.console import failures_table, to_json
    from connector.operators.values import failure_page

    where = _filter_from(**filters)

    async def work(store: StateStore) -> tuple[list[dict[str, Any]], int]:
        return await store.list_failures(where, limit=limit, after_id=after_id), await store.count_failures(where)

    rows, total = _with_store(_settings(config_path).state.url, work)
    if as_json:
        click.echo(to_json(failure_page(rows, total=total, limit=limit)))
    else:
        Console().print(failures_table(rows, total=total))


@failures.command("show")
@click.argument("failure_id", type=int)
@_CONFIG
@_JSON
def failures_show(failure_id: int, config_path: Path | None, as_json: bool) -> None:
    """One failure: the event, the mapped payload, and every attempt's error."""
    from connector.operators.console import failure_detail, to_json

    found = _with_store(_settings(config_path).state.url, lambda store: store.failure(failure_id))
    if found is None:
        raise click.ClickException(f"no failure {failure_id}")
    if as_json:
        click.echo(to_json(found))
    else:
        Console().print(failure_detail(found))


@failures.command("discard")
@click.argument("failure_id", type=int)
@click.option("--reason", required=True, help="Why it is not to be replayed (kept with the failure).")
@click.option("--by", default=None, help="Who discards it.  [default: the current user]")
@_CONFIG
def failures_discard(failure_id: int, reason: str, by: str | None, config_path: Path | None) -> None:
    """Mark an open failure as discarded: it stays for the record and is never replayed by --all."""
    async def work(store: StateStore) -> tuple[bool, dict[str, Any] | None]:
        moved = await store.set_failure_state(failure_id, "discarded", by=by or _operator(), reason=reason,
                                              only_from=("open",))
        return moved, await store.failure(failure_id)

    moved, found = _with_store(_settings(config_path).state.url, work)
    if found is None:
        raise click.ClickException(f"no failure {failure_id}")
    if not moved:
        raise click.ClickException(f"failure {failure_id} is {found['state']}, not open: nothing to discard")
    click.echo(f"failure {failure_id} discarded")


@main.command()
@click.argument("failure_ids", nargs=-1, type=int)
@click.option("--all", "everything", is_flag=True, help="Every failure the filters select (open ones by default).")
@click.option("--from-dlq", is_flag=True,
              help="Take the DLQ topic's records that the failure table lacks (e.g. failed on another instance "
                   "with its own store), add them, and replay them; with --since, those dead-lettered since then.")
@_failure_filters
@click.option("--dry-run", is_flag=True, help="Read, map and check everything; send nothing, change nothing.")
@_CONFIG
@_JSON
def replay(failure_ids: tuple[int, ...], everything: bool, from_dlq: bool, dry_run: bool, config_path: Path | None,
           as_json: bool, **filters: Any) -> None:
    """Replay failed events with the current mappings: named ones, --all that the filters select, or those
    on the DLQ that the failure table lacks (--from-dlq).

    Each is read again from its stored bytes and pushed the way live events are (rate limit, retries). One
    older than what the portal already has is not sent: it is marked resolved. Sent: replayed. Failed
    again: still open, with the new error among its attempts.
    """
    from rich.progress import Progress

    from connector.operators.console import replay_table, to_json
    from connector.operators.replay import DlqUnreadable, ReplayItem, ReplayReport, open_replayer
    from connector.push.mapping import MappingsInvalid, load_mappings

    if from_dlq and (failure_ids or everything or any(v is not None for k, v in filters.items() if k != "since")):
        raise click.UsageError("--from-dlq takes no failure ids, --all or filters other than --since")
    since = _moment(filters["since"], "--since") if from_dlq else None
    if not from_dlq and not failure_ids and not everything and not any(v is not None for v in filters.values()):
        raise click.UsageError("name failures by id, select them with --all and/or filters, or use --from-dlq")
    where = _filter_from(failure_ids, **filters)
    settings = _settings(config_path)
    configure_logging("warning", "auto", cache=False)
    try:
        mappings = load_mappings(settings.mappings.dir)
    except MappingsInvalid as exc:
        raise click.ClickException(str(exc)) from exc
    console = Console(stderr=as_json)

    async def work() -> ReplayReport:
        async with open_replayer(settings, mappings, changed_by=f"replay by {_operator()}") as replayer:
            if from_dlq:
                with Progress(console=console, transient=True) as progress:
                    task = progress.add_task("reading the DLQ", total=None)

                    def found(missing: int) -> None:
                        progress.update(task, description="planning" if dry_run else "replaying", total=missing)

                    try:
                        return await replayer.from_dlq(settings.kafka, since=since, dry_run=dry_run, on_found=found,
                                                       on_done=lambda _item: progress.advance(task))
                    except DlqUnreadable as exc:
                        raise click.ClickException(str(exc)) from exc
            rows = await replayer.store.list_failures(where, limit=None)
            if failure_ids:
                missing = sorted(set(failure_ids) - {row["id"] for row in rows})
                if missing:
                    raise click.ClickException(f"no such failure(s) in the selected state: {missing}")
            if dry_run:
                return await replayer.run(rows, dry_run=True)
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task("replaying", total=len(rows))

                def advance(_item: ReplayItem) -> None:
                    progress.advance(task)

                return await replayer.run(rows, dry_run=False, on_done=advance)

    report = _store_call(work)
    counts = report.counts
    if as_json:
        click.echo(to_json(report.as_json()))
    else:
        if report.dlq is not None:
            console.print(f"DLQ: {report.dlq.read} record(s) read, {report.dlq.known} in the failure table, "
                          f"{report.dlq.missing} not" + (" (would be added)" if dry_run else " (added)"))
        console.print(replay_table(report))
        states = ("send", "superseded", "unreadable") if dry_run else ("replayed", "resolved", "open")
        console.print(("would: " if dry_run else "") + ", ".join(f"{state} {counts.get(state, 0)}"
                                                                 for state in states))
    if not dry_run and counts.get("open"):
        sys.exit(3)  # scripts can tell "some still fail" from success


# ---------------------------------------------------------------------------------------------------------
# Operators' tools: backfill and reconcile (the portal re-aligned with the ledger)


_GIVE_UP = click.option("--give-up-after", type=click.FloatRange(min=1), default=120.0, show_default=True,
                        metavar="SECONDS", help="Stop waiting for an unavailable (or refusing) adapter after this "
                                                "long; what is left is reported as not done (exit 3).")


def _ledger_filters(command: Callable[..., None]) -> Callable[..., None]:
    for option in reversed((
        click.option("--since", help="Dossiers received (NgayTiepNhan) at or after this ISO 8601 date or time "
                                     "(local time if no offset)."),
        click.option("--until", help="Dossiers received before this ISO 8601 date or time."),
        click.option("--synced-since", help="Dossiers the portal last acknowledged at or after this time (e.g. "
                                            "since the portal's backup it lost data back to)."),
        click.option("--agency", help="The agency code of the events (dossier.agency_code)."),
        click.option("--procedure", help="The procedure code of the events (dossier.procedure_code)."),
    )):
        command = option(command)
    return command


def _ledger_filter(*, since: str | None, until: str | None, synced_since: str | None, agency: str | None,
                   procedure: str | None) -> LedgerFilter:
    from connector.store import LedgerFilter

    return LedgerFilter(received_since=_moment(since, "--since"), received_until=_moment(until, "--until"),
                        synced_since=_moment(synced_since, "--synced-since"), agency_code=agency,
                        procedure_code=procedure)


def _ledger_command(filters: dict[str, Any], config_path: Path | None, *,
                    as_json: bool) -> tuple[LedgerFilter, Settings, Console]:
    """What backfill and reconcile start from: the selection, the settings, quiet logs, and a console that
    keeps stdout for the JSON when there is JSON."""
    where = _ledger_filter(**filters)
    settings = _settings(config_path)
    configure_logging("warning", "auto", cache=False)
    return where, settings, Console(stderr=as_json)


@main.command()
@click.option("--all", "everything", is_flag=True, help="Every dossier the ledger knows (when no filter is given).")
@_ledger_filters
@click.option("--dry-run", is_flag=True, help="List what would be sent; send nothing.")
@_GIVE_UP
@_CONFIG
@_JSON
def backfill(everything: bool, dry_run: bool, give_up_after: float, config_path: Path | None, as_json: bool,
             **filters: Any) -> None:
    """Send the portal again the newest state the ledger holds of the selected dossiers: for a new portal
    environment, or after the portal lost data.

    Each record goes as a create (an update where the portal answers that it has the dossier), through the
    rate limit and retries. A dossier the daemon syncs meanwhile ends at its newer state. Progress steps
    are not kept in the ledger and are not sent again.
    """
    from collections import Counter

    from rich.progress import Progress

    from connector.operators.console import ledger_table, sent_table, to_json
    from connector.operators.reconcile import Sent, open_reconciler, selected

    if not everything and not any(v is not None for v in filters.values()):
        raise click.UsageError("select dossiers with --since/--until/--synced-since/--agency/--procedure, or --all")
    where, settings, console = _ledger_command(filters, config_path, as_json=as_json)
    counts: Counter[str] = Counter()

    async def work() -> tuple[int, list[Any]]:
        async with open_reconciler(settings, give_up_after=give_up_after) as reconciler:
            total = await reconciler.store.count_ledger(where)
            found: list[Any] = []
            if dry_run:  # a summary of each (not its record), and the first 50 whole for the table
                async for page in selected(reconciler.store, where):
                    found.extend(page[:max(0, 50 - len(found))] if not as_json else (
                        {"dossier_no": r.dossier_no, "version": r.version, "agency_code": r.agency_code,
                         "procedure_code": r.procedure_code, "received_at": r.received_at} for r in page))
                return total, found
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task("sending", total=total)
                async for page in selected(reconciler.store, where):
                    sent = await reconciler.send(page, outcome="backfilled")
                    found.extend(s for s in sent if s.state != "sent")  # the rest are counted
                    progress.advance(task, len(page))
                    counts.update(s.state for s in sent)
            return total, found

    total, found = _store_call(work)
    if dry_run:
        if as_json:
            click.echo(to_json({"dry_run": True, "total": total, "dossiers": found}))
        else:
            console.print(ledger_table(found, total=total, title="backfill, dry run: nothing is sent"))
        return
    problems: list[Sent] = found
    if as_json:
        click.echo(to_json({"total": total, "counts": dict(counts), "not_sent": [vars(s) for s in problems]}))
    else:
        if problems:
            console.print(sent_table(problems, title="backfill: not sent"))
        console.print(", ".join(f"{state} {counts.get(state, 0)}" for state in ("sent", "failed", "not_kept")))
    if problems:
        sys.exit(3)


@main.command()
@click.option("--sample", type=click.IntRange(1), default=None,
              help="Check this many dossiers drawn at random.  [default: 100]")
@click.option("--all", "everything", is_flag=True, help="Check every selected dossier.")
@_ledger_filters
@click.option("--field", "fields", multiple=True, metavar="NAME",
              help="A DongBoHoSoMC field to compare (repeatable).  [default: TrangThaiHoSo]")
@click.option("--fix", is_flag=True, help="Send the newest state of every dossier found missing or different.")
@click.option("--settle-seconds", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="With --fix: wait this long and look again before sending, so that a dossier the daemon is "
                   "syncing right now is not mistaken for a wrong one.")
@_GIVE_UP
@_CONFIG
@_JSON
def reconcile(sample: int | None, everything: bool, fields: tuple[str, ...], fix: bool, settle_seconds: float,
              give_up_after: float, config_path: Path | None, as_json: bool, **filters: Any) -> None:
    """Ask the portal (TraCuuHoSo) what it holds of the selected dossiers and report where it differs from
    the newest state synced from here; --fix sends those again.

    Exit status 3 when something is left missing, different, or unchecked.
    """
    from collections import Counter

    from rich.progress import Progress

    from connector.operators.console import findings_table, to_json
    from connector.operators.reconcile import DEFAULT_COMPARED_FIELDS, Finding, open_reconciler, selected

    if everything and sample is not None:
        raise click.UsageError("--sample and --all exclude each other")
    where, settings, console = _ledger_command(filters, config_path, as_json=as_json)
    counts: Counter[str] = Counter()
    compared = fields or DEFAULT_COMPARED_FIELDS

    async def work() -> list[Finding]:
        found: list[Finding] = []
        async with open_reconciler(settings, give_up_after=give_up_after) as reconciler:
            total = await reconciler.store.count_ledger(where)
            draw = None if everything else (sample or 100)
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task("checking", total=min(total, draw) if draw else total)
                async for page in selected(reconciler.store, where, sample=draw):
                    for finding in await reconciler.check(page, compared, fix=fix, settle_seconds=settle_seconds,
                                                         on_done=lambda _f: progress.advance(task)):
                        counts[finding.state] += 1
                        if finding.state != "same":
                            found.append(finding)
        return found

    found = _store_call(work)
    left = [f for f in found if not f.fixed]
    if as_json:
        click.echo(to_json({"checked": sum(counts.values()), "counts": dict(counts), "fields": list(compared),
                            "findings": [vars(f) for f in found]}))
    else:
        if found:
            console.print(findings_table(found))
        summary = ", ".join(f"{state} {counts.get(state, 0)}" for state in ("same", "missing", "differs",
                                                                               "not_kept", "error"))
        fixed = sum(1 for f in found if f.fixed)
        console.print(f"checked {sum(counts.values())}: {summary}" + (f"; fixed {fixed}" if fix else ""))
    if left:
        sys.exit(3)


@main.group()
def submissions() -> None:
    """Citizen submissions received from the national portal (the way back)."""


@submissions.command("list")
@click.option("--state", type=click.Choice(["accepted", "acknowledged", "rejected", "conflict"]), default=None,
              help="Only revisions in this state (rejected: what could not be published, and why; conflict: "
                   "two bodies met for one revision, waiting for the portal or for an operator).")
@click.option("--conflicts", is_flag=True,
              help="The conflicts instead: another body met for an accepted revision, its digest, and how the "
                   "portal's record settled it (settled_portal), or why it could not (unsettled); open: not yet.")
@click.option("--dossier", default=None, help="Only this national dossier number.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@_CONFIG
@_JSON
def submissions_list(state: str | None, conflicts: bool, dossier: str | None, limit: int, config_path: Path | None,
                     as_json: bool) -> None:
    """Submission revisions, newest first, with counts by state (or, with --conflicts, the conflicts)."""
    from dataclasses import asdict

    from connector.operators.console import rows_table, to_json
    from connector.store.way_back import InboundStore

    if conflicts:
        if state is not None:
            raise click.UsageError("--conflicts lists conflicts, not revisions: leave --state out")

        async def conflicts_of(store: StateStore) -> list[Any]:
            return await InboundStore(store).submission_conflicts(dossier_no=dossier, limit=limit)

        found = _with_store(_settings(config_path).state.url, conflicts_of)
        if as_json:
            click.echo(to_json({"conflicts": [asdict(c) for c in found]}))
            return
        Console().print(rows_table(
            f"Conflicting bodies ({sum(1 for c in found if c.outcome is None)} open)",
            ("dossier", "revision", "via", "first", "conflicting", "portal", "outcome", "detected", "note"),
            ((c.dossier_no, c.revision, c.received_via, (c.first_sha256 or "")[:12], c.conflicting_sha256[:12],
              (c.portal_sha256 or "")[:12], c.outcome or "open", c.detected_at, c.note) for c in found)))
        return

    rows, counts = _way_back_rows(config_path, lambda inbound: inbound.submissions_list(
        state=state, dossier_no=dossier, limit=limit), lambda inbound: inbound.submission_counts())
    _print_listing("submissions", "Submission revisions", rows, counts, as_json=as_json,
                   columns=("dossier", "revision", "state", "via", "published", "reason", "field", "attempts",
                            "updated"),
                   cells=lambda r: (r.dossier_no, r.revision, r.state, r.received_via, "yes" if r.published else "no",
                                    r.reason, r.field, r.attempts, r.updated_at))


def _way_back_rows(config_path: Path | None, rows_of: Callable[[InboundStore], Awaitable[Sequence[Any]]],
                   counts_of: Callable[[InboundStore], Awaitable[dict[str, int]]],
                   ) -> tuple[Sequence[Any], dict[str, int]]:
    """A way-back listing's rows and its counts by state, read in one visit to the store."""
    from connector.store.way_back import InboundStore

    async def work(store: StateStore) -> tuple[Sequence[Any], dict[str, int]]:
        inbound = InboundStore(store)
        return await rows_of(inbound), await counts_of(inbound)

    return _with_store(_settings(config_path).state.url, work)


def _print_listing(name: str, title: str, rows: Sequence[Any], counts: dict[str, int], *, as_json: bool,
                   columns: Sequence[str], cells: Callable[[Any], Sequence[Any]]) -> None:
    """A way-back listing (submissions, payments) with its counts by state: JSON, or a table."""
    from dataclasses import asdict

    from connector.operators.console import rows_table, to_json

    if as_json:
        click.echo(to_json({"counts": counts, name: [asdict(r) for r in rows]}))
        return
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "none yet"
    Console().print(rows_table(f"{title} ({summary})", columns, (cells(r) for r in rows)))


@main.group()
def payments() -> None:
    """Payments watched on the national Payment Platform (the way back)."""


@payments.command("list")
@click.option("--state", type=click.Choice(["pending", "confirmed", "failed", "expired"]), default=None)
@click.option("--dossier", default=None, help="Only this dossier number.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@_CONFIG
@_JSON
def payments_list(state: str | None, dossier: str | None, limit: int, config_path: Path | None,
                  as_json: bool) -> None:
    """Payments, newest request first, with counts by state."""


    rows, counts = _way_back_rows(config_path, lambda inbound: inbound.payments_list(
        state=state, dossier_no=dossier, limit=limit), lambda inbound: inbound.payment_counts())
    _print_listing("payments", "Payments", rows, counts, as_json=as_json,
                   columns=("reference", "dossier", "amount", "state", "queries", "last query", "decided by",
                            "requested", "next query"),
                   cells=lambda r: (r.reference, r.dossier_no, r.amount, r.state, r.queries, r.last_query_result,
                                    r.decided_by, r.requested_at, r.next_query_at))


@main.group()
def stats() -> None:
    """Statistics: the monthly report, the portal's on-time index (forecast), the UpdateStatistic push."""


def _period(text: str) -> Any:
    from connector.stats.report import Period

    try:
        return Period.parse(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


_MONTH = click.option("--month", "period", required=True, metavar="YYYY-MM",
                      help="The period: a month (2026-03); show also takes a quarter (2026-Q1) or a year (2026).")
_AGENCY = click.option("--agency", default=None, help="Only this agency (its code in the events).")


def _now() -> datetime:
    from connector.national_time import PORTAL_TZ

    return datetime.now(PORTAL_TZ)


@stats.command("show")
@_MONTH
@_AGENCY
@click.option("--by", "group_by", type=click.Choice(["procedure", "field"]), default=None,
              help="One line per agency and procedure (or field).")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")
@_CONFIG
@_JSON
def stats_show(period: str, agency: str | None, group_by: str | None, as_csv: bool, config_path: Path | None,
               as_json: bool) -> None:
    """The report table: received (online / direct or postal), carried over, total, resolved (early / on time /
    late), pending (within deadline / overdue), withdrawn and refused. Its identities are checked."""
    from connector.operators.console import to_json
    from connector.stats.console import report_csv, report_table
    from connector.stats.publisher import load_report

    chosen = _period(period)
    settings = _settings(config_path)
    report = _with_store(settings.state.url, lambda store: load_report(
        store, chosen, now=_now(), group_by=group_by, agency=agency))  # type: ignore[arg-type]
    if as_json:
        click.echo(to_json(report.as_json()))
    elif as_csv:
        click.echo(report_csv(report), nl=False)
    else:
        Console().print(report_table(report))


@stats.command("index")
@_MONTH
@_AGENCY
@_CONFIG
@_JSON
def stats_index(period: str, agency: str | None, config_path: Path | None, as_json: bool) -> None:
    """The portal's on-time index (indicator 2.1), forecast per agency, and the dossiers that cost points."""
    from connector.operators.console import to_json
    from connector.stats.console import index_view
    from connector.stats.publisher import load_index

    chosen = _period(period)
    settings = _settings(config_path)
    indexes = _with_store(settings.state.url, lambda store: load_index(store, chosen, now=_now(), agency=agency))
    if as_json:
        click.echo(to_json({"period": str(chosen), "agencies": [i.as_json() for i in indexes]}))
    else:
        Console().print(index_view(indexes, str(chosen)))


@stats.command("push")
@_MONTH
@_AGENCY
@click.option("--final/--provisional", default=None,
              help="Send as the month's final figures, or as provisional.  [default: final once the month is over]")
@click.option("--force", is_flag=True, help="Send even the records the portal already holds.")
@_CONFIG
@_JSON
def stats_push(period: str, agency: str | None, final: bool | None, force: bool, config_path: Path | None,
               as_json: bool) -> None:
    """Send the month's UpdateStatistic record of every agency (through the rate limit, retries and breaker).
    A record the portal already holds is not sent again. Exit 3 when one failed."""
    import contextlib

    from connector.observability import Metrics
    from connector.operators.console import rows_table, to_json
    from connector.portal.gateway import open_gateway
    from connector.stats.publisher import StatisticsPublisher

    chosen = _period(period)
    if chosen.kind != "month":
        raise click.BadParameter("UpdateStatistic takes a month (2026-03)", param_hint="--month")
    settings = _settings(config_path)

    async def work(store: StateStore) -> list[Any]:
        async with contextlib.AsyncExitStack() as stack:
            metrics = Metrics()
            gateway = open_gateway(settings, store, metrics, stack).gateway
            publisher = StatisticsPublisher(settings, store, gateway, metrics)
            return await publisher.push_month(chosen, final=final, force=force, agency=agency)

    results = _with_store(settings.state.url, work)
    if as_json:
        click.echo(to_json([{"agency_code": r.agency_code, "period": str(r.period), "final": r.final,
                             "outcome": r.outcome, "error": r.error} for r in results]))
    else:
        Console().print(rows_table(f"UpdateStatistic {chosen}", ("agency", "final", "outcome", "error"),
                                   ((r.agency_code, r.final, r.outcome, r.error) for r in results)))
    if any(r.outcome == "failed" for r in results):
        sys.exit(3)


@stats.command("rebuild")
@click.option("--since", required=True, metavar="DATE", help="Re-read the dossier topic from this day or moment on.")
@_CONFIG
@_JSON
def stats_rebuild(since: str, config_path: Path | None, as_json: bool) -> None:
    """Recompute the dossiers' facts by reading the dossier topic again from --since, as far as the topic's
    retention reaches (outside the daemon's consumer group: its offsets are not touched)."""
    from connector.operators.console import to_json
    from connector.push.mapping import load_mappings
    from connector.stats.rebuild import rebuild_facts

    moment = _moment(since, "--since")
    assert moment is not None
    settings = _settings(config_path)
    try:
        mappings = load_mappings(settings.mappings.dir)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    report = _with_store(settings.state.url, lambda store: rebuild_facts(settings, mappings, store, since=moment))
    if as_json:
        click.echo(to_json(report.as_json()))
        return
    reach = report.oldest_read.isoformat(timespec="seconds") if report.oldest_read else "no event"
    click.echo(f"read {report.events} event(s) from {since} (the oldest one read: {reach}); facts of "
               f"{report.dossiers} dossier(s) rebuilt, {report.continued} continued from the stored facts")
    if report.partial:
        click.echo(f"{report.partial} dossier(s) began before what the topic still holds from --since: rebuilt "
                   "from the events it has (their earlier supplement requests and first due date are not known)")
    if report.unreadable:
        click.echo(f"{report.unreadable} event(s) unreadable (as the daemon would dead-letter them): "
                   + ", ".join(f"{k} {v}" for k, v in sorted(report.by_reason.items())))


@main.group()
def mappings() -> None:
    """Inspect deployment mappings."""


@mappings.command("check")
@click.argument("directory", required=False, type=click.Path(path_type=Path), default=DEFAULT_MAPPINGS_DIR)
def mappings_check(directory: Path) -> None:
    """Validate a mappings directory; exit non-zero with every problem listed."""
    from connector.push.mapping import MappingsInvalid, load_mappings

    try:
        loaded = load_mappings(directory)
    except MappingsInvalid as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    click.echo(
        f"{directory}: ok — {len(loaded.procedures)} procedures, "
        f"{len(loaded.status.by_status)} statuses, {len(loaded.status.by_sub_status)} sub-statuses, "
        f"{len(loaded.limits)} length limits"
    )


@main.command("simulate-portal")
@click.option("--listen", default="127.0.0.1:8080", show_default=True, help="HOST:PORT to serve on.")
@click.option("--username", default="portal-sync", show_default=True)
@click.option("--password", default="secret", show_default=True)
@click.option("--session-ttl", type=float, default=600.0, show_default=True, help="Session lifetime, seconds.")
@click.option("--keep-history", type=int, default=100, show_default=True,
              help="Pushed records kept per dossier for inspection (0 = none, for long runs).")
@click.option("--chaos-seed", type=int, help="Seed of the chaos knobs' randomness, for reproducible runs.")
@click.option("--error-rate", "error_rates", multiple=True, metavar="[SERVICE=]P",
              help="Answer 5xx with probability P: on every service call, or on SERVICE ('login' only by "
                   "name). Repeatable.")
@click.option("--error-statuses", metavar="S,S,...", help="The 5xx statuses drawn from.  [default: 500,502,503]")
@click.option("--latency-ms", metavar="MS|uniform:MIN:MAX|lognormal:P50:P99",
              help="Delay before answering: fixed, uniform, or lognormal given its median and 99th percentile.")
@click.option("--throttle-rps", type=int, help="Answer 429 to calls beyond this many in each 1 s window.")
@click.option("--throttle-retry-after", type=int, default=1, show_default=True,
              help="Retry-After seconds on the 429s of --throttle-rps and --burst.")
@click.option("--burst", metavar="EVERY:FOR", help="Answer 429 to every call for FOR seconds every EVERY seconds.")
@click.option("--outage", "outages", multiple=True, metavar="START:DURATION[:reset]",
              help="From START seconds after startup, for DURATION seconds, every call answers 503 (with "
                   ":reset, the connection is closed unanswered). Repeatable.")
@click.option("--apply-then-timeout-rate", type=float,
              help="Probability that a push takes effect but its reply is withheld for --hang-seconds.")
@click.option("--hang-seconds", type=float, help="How long a withheld reply is held back.  [default: 60]")
@click.option("--crash-on", "crashing_dossiers", multiple=True, metavar="DOSSIER_NO",
              help="Every push naming this dossier answers 500 and takes no effect: a poison record. Repeatable.")
def simulate_portal(
    listen: str, username: str, password: str, session_ttl: float, keep_history: int, chaos_seed: int | None,
    error_rates: tuple[str, ...], error_statuses: str | None, latency_ms: str | None, throttle_rps: int | None,
    throttle_retry_after: int, burst: str | None, outages: tuple[str, ...],
    apply_then_timeout_rate: float | None, hang_seconds: float | None, crashing_dossiers: tuple[str, ...],
) -> None:
    """Serve a stand-in for the national portal's integration adapter (state in memory).

    The chaos flags set the misbehaviour in force from startup (and after POST /_sim/reset); PUT
    /_sim/chaos replaces it at run time, and GET /_sim/rate reports the load received.
    """
    from connector.dev.simulator.app import SimulatorConfig, start_simulator
    from connector.dev.simulator.chaos import ChaosInvalid, profile_from_flags

    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter("must be HOST:PORT", param_hint="--listen")
    try:
        chaos = profile_from_flags(
            seed=chaos_seed, error_rates=error_rates, error_statuses=error_statuses, latency_ms=latency_ms,
            throttle_rps=throttle_rps, retry_after=throttle_retry_after, burst=burst, outages=outages,
            apply_then_timeout_rate=apply_then_timeout_rate, hang_seconds=hang_seconds,
            crashing_dossiers=crashing_dossiers,
        )
    except ChaosInvalid as exc:
        raise click.UsageError(str(exc)) from exc
    configure_logging("info", "auto", cache=False)
    config = SimulatorConfig(username=username, password=password, session_ttl_seconds=session_ttl,
                             keep_history=keep_history, chaos=chaos)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        runner, url = await start_simulator(host, int(port), config)
        click.echo(f"portal simulator listening on {url}  (state: {url}/_sim/dossiers)")
        knobs = chaos.model_dump_json(exclude_defaults=True)
        if knobs != "{}":
            click.echo(f"chaos: {knobs}")
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(serve())


@main.command()
@click.option("--dossiers", default=50, show_default=True, help="How many sample dossiers to sync.")
@click.option("--seed", default=2019, show_default=True)
def demo(dossiers: int, seed: int) -> None:
    """Start a local broker and the portal simulator, sync a sample data set, print what happened."""
    from connector.dev.demo import run_demo

    sys.exit(asyncio.run(run_demo(dossiers=dossiers, seed=seed)))


if __name__ == "__main__":  # pragma: no cover
    main()
