"""The daemon's garbage-collector settings and the metric that times collections."""

import gc

from connector.observability import Metrics
from connector.service import YOUNG_COLLECTION_THRESHOLD, settle_heap


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


def test_settling_the_heap_freezes_what_exists_and_collects_the_young_less_often() -> None:
    threshold = gc.get_threshold()
    try:
        settle_heap()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (YOUNG_COLLECTION_THRESHOLD, threshold[1], threshold[2])
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
