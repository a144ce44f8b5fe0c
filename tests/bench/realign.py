"""Benchmark of backfill and reconcile: how fast the ledger's newest records go to the portal, and how fast
the portal is asked about them (``TraCuuHoSo``), against the simulator on loopback with a SQLite ledger.

The rate limit is raised out of the way (``--rps``): the figures are this process's cost, not the limit's.
Prints the median of ``--repeat`` runs.

    python -m tests.bench.realign [--dossiers 10000] [--lookups 2000] [--repeat 3] [--rps 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from connector.config import DEFAULT_MAPPINGS_DIR, load_settings
from connector.dev.samples import generate_events
from connector.dev.simulator.app import SimulatorConfig, start_simulator
from connector.operators.reconcile import open_reconciler, selected
from connector.push.events import decode_event
from connector.push.mapping import load_mappings, map_event
from connector.push.sync import hashed_record
from connector.store import LedgerFilter, StateStore, Synced


def ledger_rows(dossiers: int) -> list[Synced]:
    """The newest mapped record of ``dossiers`` sample dossiers, as the daemon would have recorded them."""
    mappings = load_mappings(DEFAULT_MAPPINGS_DIR)
    newest: dict[str, Synced] = {}
    for message in generate_events(dossiers=dossiers, seed=7, include_bad=False):
        event = decode_event(message.key, message.value, max_bytes=1 << 20)
        if event.dossier.origin != "local":
            continue
        mapped = map_event(event, mappings)
        text, digest = hashed_record(mapped.record)
        newest[mapped.dossier_no] = Synced(mapped.dossier_no, mapped.version, digest, event.event_id, text,
                                           mapped.agency_code, mapped.procedure_code, mapped.received_at, "created")
    return list(newest.values())


async def one_run(directory: Path, rows: list[Synced], lookups: int, rps: float) -> tuple[float, float]:
    simulator = SimulatorConfig(username="bench", password="bench", keep_history=0)
    runner, url = await start_simulator("127.0.0.1", 0, simulator)
    try:
        settings = load_settings(None, portal={
            "adapter_url": url, "username": "bench", "password": "bench", "madonvi": "000.00.01.G12",
            "rate_limit": {"requests_per_second": rps, "max_concurrent_requests": 8}},
            state={"url": f"sqlite+aiosqlite:///{directory / 'state.db'}"})
        store = await StateStore.open(settings.state.url)
        try:
            for start in range(0, len(rows), 500):
                await store.record_synced_many(rows[start:start + 500])
            async with open_reconciler(settings, store=store, give_up_after=60) as reconciler:
                began = time.perf_counter()
                async for page in selected(store, LedgerFilter()):
                    sent = await reconciler.send(page, outcome="backfilled")
                    assert all(s.state == "sent" for s in sent), [s for s in sent if s.state != "sent"][:3]
                backfill = len(rows) / (time.perf_counter() - began)
                began = time.perf_counter()
                checked = 0
                async for page in selected(store, LedgerFilter(), sample=lookups):
                    findings = await reconciler.check(page)
                    assert all(f.state == "same" for f in findings)
                    checked += len(findings)
                reconcile = checked / (time.perf_counter() - began)
        finally:
            await store.close()
    finally:
        await runner.cleanup()
    return backfill, reconcile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dossiers", type=int, default=10_000)
    parser.add_argument("--lookups", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rps", type=float, default=5_000.0)
    args = parser.parse_args()
    rows = ledger_rows(args.dossiers)
    results = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as directory:
            results.append(asyncio.run(one_run(Path(directory), rows, args.lookups, args.rps)))
    backfills, reconciles = zip(*results, strict=True)
    print(f"backfill:  {statistics.median(backfills):,.0f} dossiers/s (median of {args.repeat}: "
          f"{' / '.join(f'{b:,.0f}' for b in backfills)}), {len(rows):,} dossiers, batches of 100")
    print(f"reconcile: {statistics.median(reconciles):,.0f} lookups/s (median of {args.repeat}: "
          f"{' / '.join(f'{r:,.0f}' for r in reconciles)}), {min(args.lookups, len(rows)):,} dossiers drawn")


if __name__ == "__main__":
    main()
