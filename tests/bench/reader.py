"""Micro-benchmark of the per-event read path: decode + validate (``decode_event``) and ``map_event``.

Pure code, this process, one core; no broker. Prints the median µs/event of each stage over several
repetitions, and the memory one decoded + mapped event keeps alive (the daemon holds up to 10,000 in flight).

    python -m tests.bench.reader [--dossiers 4000] [--repeat 7] [--seed 1]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime

from pydantic import BaseModel

from connector.config import DEFAULT_MAPPINGS_DIR
from connector.dev.samples import generate_events
from connector.push.events import DossierEvent, decode_event
from connector.push.mapping import MappedEvent, Mappings, load_mappings, map_event

MAX_BYTES = 1 << 20


def timed(repeat: int, body: Callable[[], object], count: int) -> list[float]:
    """µs per event of each repetition; the collector is off while timing, as its pauses are noise here."""
    runs = []
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            started = time.perf_counter()
            body()
            runs.append((time.perf_counter() - started) * 1e6 / count)
        finally:
            gc.enable()
    return runs


def rss_bytes() -> int | None:
    """Resident set size now (Linux), or None where it cannot be read cheaply."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def deep_sizes(roots: Sequence[object]) -> Counter[str]:
    """sys.getsizeof over everything reachable from ``roots``, each object once, by kind; what a pydantic
    model keeps besides its values (its ``__dict__`` and its set of fields set) is counted apart."""
    sizes: Counter[str] = Counter()
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or obj is None or isinstance(obj, bool | type):
            continue
        seen.add(id(obj))
        if isinstance(obj, BaseModel):
            sizes["models"] += sys.getsizeof(obj) + sys.getsizeof(obj.__dict__)
            sizes["models' fields-set sets"] += sys.getsizeof(obj.__pydantic_fields_set__)
            seen.update((id(obj.__dict__), id(obj.__pydantic_fields_set__)))
            stack.extend(obj.__dict__.values())
        elif isinstance(obj, dict):
            sizes["dicts"] += sys.getsizeof(obj)
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple):
            sizes["lists, tuples"] += sys.getsizeof(obj)
            stack.extend(obj)
        elif isinstance(obj, datetime):
            sizes["datetimes"] += sys.getsizeof(obj)
            stack.append(obj.tzinfo)
        elif isinstance(obj, str):
            sizes["strings"] += sys.getsizeof(obj)
        elif isinstance(obj, MappedEvent):
            own = getattr(obj, "__dict__", None)  # a dataclass with slots has none
            sizes["MappedEvent"] += sys.getsizeof(obj) + (0 if own is None else sys.getsizeof(own))
            stack.extend((obj.dossier_no, obj.record, obj.step, obj.truncated))
        else:
            sizes[type(obj).__name__] += sys.getsizeof(obj)
    return sizes


def line(name: str, runs: Sequence[float]) -> str:
    median = statistics.median(runs)
    return (f"  {name:<18} median {median:8.2f} µs/event  ({1e6 / median:>9,.0f} events/s)  "
            f"min {min(runs):.2f}  max {max(runs):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dossiers", type=int, default=4000, help="sample dossiers (≈5 events each)")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    mappings: Mappings = load_mappings(DEFAULT_MAPPINGS_DIR)
    records = [(m.key, m.value) for m in generate_events(dossiers=args.dossiers, seed=args.seed)
               if m.label == "valid"]
    count = len(records)
    size = statistics.mean(len(v) for _, v in records)
    events: list[DossierEvent] = [decode_event(k, v, max_bytes=MAX_BYTES) for k, v in records]
    for event in events:  # one pass first, so that no timed run pays for first calls
        map_event(event, mappings)
    print(f"reader bench: {count:,} valid events from {args.dossiers:,} dossiers (seed {args.seed}), "
          f"mean {size:,.0f} bytes of JSON each; {args.repeat} repetitions")

    def decode_all() -> None:
        for key, value in records:
            decode_event(key, value, max_bytes=MAX_BYTES)

    def map_all() -> None:
        for event in events:
            map_event(event, mappings)

    def both() -> None:
        for key, value in records:
            map_event(decode_event(key, value, max_bytes=MAX_BYTES), mappings)

    decode_runs = timed(args.repeat, decode_all, count)
    map_runs = timed(args.repeat, map_all, count)
    total_runs = timed(args.repeat, both, count)
    print(line("decode_event", decode_runs))
    print(line("map_event", map_runs))
    print(line("decode + map", total_runs))

    # What the daemon holds per event in flight: the decoded event and what it maps to.
    held = records[: min(count, 10_000)]
    gc.collect()
    before = rss_bytes()
    kept = [(event, map_event(event, mappings))
            for event in (decode_event(k, v, max_bytes=MAX_BYTES) for k, v in held)]
    gc.collect()
    after = rss_bytes()
    if before is not None and after is not None:
        print(f"  RSS growth holding {len(kept):,} decoded + mapped events: "
              f"{(after - before) / len(kept) / 1024:,.1f} KiB per event")
    events_only = deep_sizes([event for event, _ in kept])
    with_mapped = deep_sizes(kept)
    print(f"  reachable per event (sys.getsizeof, shared objects once): DossierEvent "
          f"{sum(events_only.values()) / len(kept) / 1024:,.1f} KiB, with its MappedEvent "
          f"{sum(with_mapped.values()) / len(kept) / 1024:,.1f} KiB")
    print("    " + ", ".join(f"{kind} {total / len(kept):,.0f} B" for kind, total in with_mapped.most_common()))


if __name__ == "__main__":
    main()
