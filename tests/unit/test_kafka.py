from hypothesis import given
from hypothesis import strategies as st

from connector.errors import PermanentError
from connector.kafka import ERROR_HEADER_PREFIX, OffsetWatermark, dead_letter_headers


def test_nothing_tracked_means_nothing_to_commit() -> None:
    assert OffsetWatermark().commit_point is None


def test_the_commit_point_waits_for_the_oldest_unfinished_record() -> None:
    wm = OffsetWatermark()
    for offset in (10, 11, 12, 13):
        wm.track(offset)
    wm.finish(12)
    wm.finish(11)
    assert wm.commit_point == 10
    wm.finish(10)
    assert wm.commit_point == 13
    wm.finish(13)
    assert wm.commit_point == 14
    assert wm.in_flight == 0


def test_gaps_in_offsets_do_not_block_the_commit_point() -> None:
    wm = OffsetWatermark()
    wm.track(3)
    wm.track(7)  # 4..6 were compacted away
    wm.finish(3)
    assert wm.commit_point == 7
    wm.finish(7)
    assert wm.commit_point == 8


@given(st.permutations(list(range(30))), st.integers(min_value=0, max_value=30))
def test_the_commit_point_never_passes_an_unfinished_record(order, finished_count) -> None:
    wm = OffsetWatermark()
    for offset in range(30):
        wm.track(offset)
    done = set(order[:finished_count])
    for offset in order[:finished_count]:
        wm.finish(offset)
    expected = next((o for o in range(30) if o not in done), 30)
    assert wm.commit_point == expected
    assert wm.in_flight == 30 - finished_count


def test_dead_letter_headers_keep_the_originals_and_name_the_error() -> None:
    error = PermanentError("rejected by the portal", reason="portal_rejected", field="GhiChu")
    error.attempts = 3
    headers = dict(dead_letter_headers(
        [("traceparent", b"00-abc"), (ERROR_HEADER_PREFIX + "reason", b"stale")],
        topic="dossier.events", partition=2, offset=41, error=error, attempts=error.attempts,
    ))
    assert headers["traceparent"] == b"00-abc"
    assert headers[ERROR_HEADER_PREFIX + "topic"] == b"dossier.events"
    assert headers[ERROR_HEADER_PREFIX + "partition"] == b"2"
    assert headers[ERROR_HEADER_PREFIX + "offset"] == b"41"
    assert headers[ERROR_HEADER_PREFIX + "exception.class.name"] == b"PermanentError"
    assert headers[ERROR_HEADER_PREFIX + "exception.message"] == b"GhiChu: rejected by the portal"
    assert headers[ERROR_HEADER_PREFIX + "reason"] == b"portal_rejected"  # the stale one was replaced
    assert headers[ERROR_HEADER_PREFIX + "attempts"] == b"3"


def test_a_record_fetched_again_after_a_seek_back_is_tracked_once() -> None:
    wm = OffsetWatermark()
    wm.track(4)  # started, then the pipeline sought back: it will arrive again
    wm.track(4)
    wm.track(5)
    wm.finish(4)
    wm.finish(5)
    assert wm.commit_point == 6
    assert wm.in_flight == 0
