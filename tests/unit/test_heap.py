"""The daemon's heap: garbage-collector settings, the metric that times collections, trimming."""

import gc

from connector.heap import LARGE_BLOCK_BYTES, _fix_mmap_threshold, settle_heap, trim_heap
from connector.observability import Metrics


def collections_seen(metrics: Metrics, generation: int) -> float:
    value = metrics.registry.get_sample_value("portal_sync_gc_pause_seconds_count", {"generation": str(generation)})
    return value or 0.0


def test_every_collection_is_timed_until_the_watch_stops() -> None:
    metrics = Metrics()
    unwatch = metrics.watch_collector()
    try:
        gc.collect()
        gc.collect(0)
        assert collections_seen(metrics, 2) >= 1
        assert collections_seen(metrics, 0) >= 1
        assert metrics.registry.get_sample_value("portal_sync_gc_pause_seconds_sum", {"generation": "2"}) > 0
    finally:
        unwatch()
    before = collections_seen(metrics, 2)
    gc.collect()
    assert collections_seen(metrics, 2) == before


def test_settling_the_heap_leaves_what_exists_out_of_later_collections() -> None:
    try:
        settle_heap()
        assert gc.get_freeze_count() > 0
        kept = object.__new__(type("Kept", (), {}))
        assert gc.is_tracked(kept)
        assert not any(o is kept for o in gc.get_objects(2))  # new objects start young, not frozen
    finally:
        gc.unfreeze()


def test_free_memory_goes_back_to_the_system_where_the_c_library_can() -> None:
    # glibc (this project's Linux targets) has malloc_trim; elsewhere trimming is skipped, not an error.
    assert trim_heap() is True
    assert trim_heap() is True


def test_large_blocks_are_mapped_apart_at_a_fixed_size_where_the_c_library_allows() -> None:
    # glibc answers 1 when it takes the setting (and stops moving the threshold on its own).
    assert _fix_mmap_threshold(LARGE_BLOCK_BYTES) is True
