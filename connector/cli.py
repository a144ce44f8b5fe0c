"""``portal-sync``: the command line. Thin: parse, load settings, hand over."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import click
import structlog

from connector.config import DEFAULT_MAPPINGS_DIR, ConfigError, load_settings
from connector.observability import configure_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="portal-sync")
def main() -> None:
    """Keeps the ministry's one-stop dossier system and the national public service portal in step."""


@main.command()
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML settings file; PORTAL_SYNC__SECTION__KEY environment variables override it.")
def run(config_path: Path | None) -> None:
    """Run the sync daemon until SIGTERM or SIGINT."""
    from connector.heap import settle_heap
    from connector.mapping import MappingsInvalid
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
    except MappingsInvalid as exc:
        raise click.ClickException(str(exc)) from exc
    except Exception:  # noqa: BLE001 - the outermost boundary: log it as a structured event, exit 1
        # Unfinished events were not committed; a supervisor restarts us and they are delivered again.
        structlog.get_logger(__name__).critical("daemon stopped by an unexpected error", exc_info=True)
        sys.exit(1)


@main.group()
def db() -> None:
    """The state store's schema."""


def _state_url(config_path: Path | None) -> str:
    try:
        return load_settings(config_path).state.url
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@db.command("upgrade")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML settings file (its state.url is migrated).")
def db_upgrade(config_path: Path | None) -> None:
    """Bring the state store to the newest schema revision (the daemon also does this at start)."""
    from sqlalchemy.exc import DBAPIError

    from connector.store import StateStore, schema

    async def upgrade() -> tuple[str | None, str | None]:
        store = await StateStore.open(_state_url(config_path), migrate=False)
        try:
            return await schema.upgrade(store.engine)
        finally:
            await store.close()

    try:
        before, after = asyncio.run(upgrade())
    except (DBAPIError, OSError) as exc:
        raise click.ClickException(f"cannot migrate the state store: {type(exc).__name__}") from exc
    click.echo(f"state store at revision {after}" + ("" if before == after else f" (was {before or 'empty'})"))


@db.command("current")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML settings file.")
def db_current(config_path: Path | None) -> None:
    """Print the state store's schema revision and the newest this version knows."""
    from connector.store import StateStore, schema

    async def current() -> str | None:
        store = await StateStore.open(_state_url(config_path), migrate=False)
        try:
            return await schema.current_revision(store.engine)
        finally:
            await store.close()

    click.echo(f"state store revision: {asyncio.run(current()) or 'none (empty)'}; newest: {schema.head_revision()}")


@main.group()
def mappings() -> None:
    """Inspect deployment mappings."""


@mappings.command("check")
@click.argument("directory", required=False, type=click.Path(path_type=Path), default=DEFAULT_MAPPINGS_DIR)
def mappings_check(directory: Path) -> None:
    """Validate a mappings directory; exit non-zero with every problem listed."""
    from connector.mapping import MappingsInvalid, load_mappings

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
    from connector.simulator.app import SimulatorConfig, start_simulator
    from connector.simulator.chaos import ChaosInvalid, profile_from_flags

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
    configure_logging("info", "auto")
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
    from connector.demo import run_demo

    sys.exit(asyncio.run(run_demo(dossiers=dossiers, seed=seed)))


if __name__ == "__main__":  # pragma: no cover
    main()
