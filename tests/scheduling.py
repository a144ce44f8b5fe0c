"""Longest tests first across the xdist workers (hooks imported by tests/conftest.py).

With ``-n``, xdist's ``load`` mode hands each worker a block of consecutive tests and refills it as it goes,
so a long test can start on a worker late in the run and finish alone at its end, the other workers idle.
Here the controller hands tests out one at a time (each worker holds one running and one waiting), longest
first, by the durations the previous runs took; tests it knows nothing of follow, the integration tests
first, each group in collection order. The durations are kept in pytest's cache (``.pytest_cache``).

Only the order changes: every test still runs once, and ``--dist`` other than ``load`` is left as it is.
"""

from __future__ import annotations

from itertools import cycle
from typing import Any

import pytest

CACHE_KEY = "portal-sync/durations"
# Shorter tests are not remembered: the order among them does not matter, and the cache stays small.
REMEMBERED_SECONDS = 0.5
UNKNOWN_INTEGRATION_SECONDS = 0.4  # before the tests known to be short, after the ones known to be long


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _durations(config: pytest.Config) -> dict[str, float]:
    cache = getattr(config, "cache", None)
    stored = cache.get(CACHE_KEY, {}) if cache is not None else {}
    return {k: float(v) for k, v in stored.items() if isinstance(v, int | float)} if isinstance(stored, dict) else {}


def _estimate(nodeid: str, durations: dict[str, float]) -> float:
    if nodeid in durations:
        return durations[nodeid]
    return UNKNOWN_INTEGRATION_SECONDS if nodeid.startswith("tests/integration/") else 0.0


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getoption("dist") != "load":
        return None
    from xdist.scheduler import LoadScheduling

    durations = _durations(config)

    class LongestFirstScheduling(LoadScheduling):  # type: ignore[misc]
        def schedule(self) -> None:
            assert self.collection_is_completed
            if self.collection is not None or not self._check_nodes_have_same_collection():
                super().schedule()  # a later call (new nodes), or the abort on differing collections
                return
            collection = next(iter(self.node2collection.values()))
            self.collection = collection
            # sorted() is stable: equal estimates keep the collection order (and their fixtures' locality).
            self.pending[:] = sorted(range(len(collection)), key=lambda i: -_estimate(collection[i], durations))
            self.maxschedchunk = 1  # refill one test at a time (check_schedule keeps two per worker)
            nodes = cycle(self.nodes)
            for _ in range(min(2 * len(self.nodes), len(self.pending))):
                self._send_tests(next(nodes), 1)
            if not self.pending:
                for node in self.nodes:
                    node.shutdown()

    return LongestFirstScheduling(config, log)


_measured: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # On the xdist controller this sees every worker's reports; on a worker it is not used.
    _measured[report.nodeid] = _measured.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    cache = getattr(config, "cache", None)
    if _is_worker(config) or cache is None or not _measured:
        return
    durations = _durations(config)
    for nodeid, seconds in _measured.items():
        if seconds >= REMEMBERED_SECONDS:
            durations[nodeid] = round(seconds, 2)
        else:
            durations.pop(nodeid, None)
    cache.set(CACHE_KEY, durations)
