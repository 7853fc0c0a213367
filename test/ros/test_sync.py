"""The pairing policy and mailbox with hand-stamped items: no transport, no rclpy."""
from __future__ import annotations

import threading

import pytest

from utptrack_ros.ros.sync import ApproximateSync, FrameHistory, NewestSetMailbox, Stamped

MS = 1_000_000


def S(t_ms: float, arrival_ms: float = 0.0, tag: str = "") -> Stamped:
    return Stamped(int(t_ms * MS), int(arrival_ms * MS), tag)


def make(slop_ms=20, queue=5, timeout_ms=1000, aux=True, start_ms=1) -> ApproximateSync:
    return ApproximateSync(slop_ms * MS, queue, timeout_ms * MS, aux_enabled=aux, start_ns=start_ms * MS)


def test_pairs_within_slop_in_either_arrival_order():
    sync = make()
    assert sync.add_rgb(S(100), 0) is None  # waits for its depth
    out = sync.add_aux(S(110), 1 * MS)
    assert out.rgb.stamp_ns == 100 * MS and out.aux.stamp_ns == 110 * MS and out.skew_ns == 10 * MS
    assert sync.add_aux(S(133), 2 * MS) is None
    out = sync.add_rgb(S(133), 3 * MS)
    assert out.aux.stamp_ns == 133 * MS
    assert sync.counters.matched == 2 and sync.counters.unmatched_rgb == 0 and sync.queued == (0, 0)


def test_slop_is_inclusive_and_outside_never_pairs():
    sync = make(slop_ms=20)
    sync.add_rgb(S(0), 0)
    assert sync.add_aux(S(20), 0) is not None  # |dt| == slop pairs
    sync.add_rgb(S(200), 0)
    assert sync.add_aux(S(221), 0) is None  # 21 ms: not a pair
    assert sync.counters.unmatched_rgb == 1  # image 200 can never pair any more (aux passed it)
    assert sync.add_rgb(S(400), 0) is None
    assert sync.counters.unmatched_aux == 1  # aux 221 passed by image 400
    assert sync.counters.matched == 1


def test_newest_image_wins_and_sets_never_cross():
    sync = make(slop_ms=20)
    for t in (0, 33, 66):
        assert sync.add_rgb(S(t), 0) is None
    # one depth frame near the newest image: (66, 60) is emitted; 0 and 33 are discarded
    out = sync.add_aux(S(60), 0)
    assert out.rgb.stamp_ns == 66 * MS
    assert sync.counters.unmatched_rgb == 2 and sync.queued == (0, 0)
    # a late depth frame for image 33 cannot pair backwards
    assert sync.add_aux(S(33), 0) is None
    assert sync.counters.time_jumps == 1


def test_nearest_partner_is_chosen():
    sync = make(slop_ms=20)
    sync.add_aux(S(90), 0)
    sync.add_aux(S(98), 0)
    out = sync.add_rgb(S(100), 0)
    assert out.aux.stamp_ns == 98 * MS
    assert sync.counters.unmatched_aux == 1  # 90 is older than the used 98


def test_queue_bound_evicts_oldest():
    sync = make(slop_ms=5, queue=2)
    for t in (0, 100, 200):
        sync.add_rgb(S(t), 0)
    assert sync.queued == (2, 0) and sync.counters.unmatched_rgb == 1
    out = sync.add_aux(S(100), 0)
    assert out.rgb.stamp_ns == 100 * MS


def test_aux_timeout_falls_back_to_rgb_only_and_resumes():
    sync = make(timeout_ms=500)  # started at 1 ms
    assert sync.add_rgb(S(0), 100 * MS) is None  # within the timeout since start: waits
    assert not sync.aux_fallback(501 * MS) and sync.aux_fallback(502 * MS)
    out = sync.add_rgb(S(533), 600 * MS)
    assert out is not None and out.aux is None
    assert sync.counters.rgb_only == 1 and sync.counters.unmatched_rgb == 1
    # the aux stream comes back: pairing resumes at once
    sync.add_aux(S(566), 650 * MS)
    assert not sync.aux_fallback(651 * MS)
    out = sync.add_rgb(S(566), 660 * MS)
    assert out.aux is not None and sync.counters.matched == 1
    # and stops again
    assert sync.add_rgb(S(2000), 1200 * MS).aux is None


def test_persistent_stamp_mismatch_falls_back_to_rgb_only_and_recovers():
    """Two drivers on different clocks: aux stamps 45 ms after RGB with a 20 ms slop. Nothing
    pairs; after aux_timeout RGB goes alone (counted rgb_only), the offset is measured, and pairs
    resume as soon as the stamps match again."""
    sync = make(slop_ms=20, timeout_ms=500)
    out = []
    for k in range(10):  # 10 Hz, arrivals on the node clock
        t = 1000 + 100 * k
        out.append(sync.add_aux(S(t + 45), t * MS))
        out.append(sync.add_rgb(S(t), t * MS + 1))
    sent = [o for o in out if o is not None]
    assert all(o.aux is None for o in sent) and len(sent) >= 4  # RGB-only once the mismatch lasted 0.5 s
    assert sync.mismatch_fallback(1901 * MS) and sync.counters.matched == 0 and sync.counters.rgb_only == len(sent)
    assert sync.offset_ns == 45 * MS and sync.mismatch_s(1901 * MS) > 0.5
    assert not sync.aux_fallback(1901 * MS)  # not silent: a different fallback
    # the driver is fixed: the first image with an aux frame within the slop pairs, and pairing resumes
    assert sync.add_aux(S(2000), 2000 * MS) is None
    assert sync.add_rgb(S(2000), 2000 * MS + 1).aux.stamp_ns == 2000 * MS
    assert not sync.mismatch_fallback(2001 * MS) and sync.offset_ns == 0
    # an aux frame arriving after an image sent alone, within the slop of its stamp, ends it too
    sync = make(slop_ms=20, timeout_ms=500)
    for k in range(10):
        t = 1000 + 100 * k
        sync.add_rgb(S(t), t * MS)
        sync.add_aux(S(t - 45), t * MS + 1)  # aux stamped 45 ms early
    assert sync.mismatch_fallback(1902 * MS) and sync.offset_ns == -45 * MS
    assert sync.add_rgb(S(2000), 2000 * MS).aux is None  # alone: its aux frame is not there yet
    assert sync.add_aux(S(2000), 2001 * MS) is None  # the driver fixed: within the slop of image 2000
    assert not sync.mismatch_fallback(2002 * MS)
    assert sync.add_rgb(S(2100), 2100 * MS) is None  # waits for its partner again
    assert sync.add_aux(S(2100), 2101 * MS).aux.stamp_ns == 2100 * MS


def test_offset_of_drivers_seconds_apart_is_measured_by_arrival():
    """Aux stamps 2 s ahead at 30 Hz: the offset is 2 s (frames that arrived together), not the
    distance to whichever recent stamp happens to be nearest."""
    sync = make(slop_ms=20, timeout_ms=500)
    for k in range(40):
        t = 1000 + 33 * k
        sync.add_rgb(S(t), t * MS)
        sync.add_aux(S(t + 2000), t * MS + 2)
    assert sync.offset_ns == 2000 * MS and sync.mismatch_fallback(2400 * MS)


def test_mismatch_fallback_still_pairs_a_queued_partner():
    sync = make(slop_ms=20, timeout_ms=100)
    for t in (0, 60, 120):  # aux 30 ms before each image: never within the slop
        sync.add_aux(S(t), t * MS + 1)
        sync.add_rgb(S(t + 30), t * MS + 2)
    assert sync.mismatch_fallback(123 * MS) and sync.offset_ns == -30 * MS
    sync.add_aux(S(500), 180 * MS)
    out = sync.add_rgb(S(505), 181 * MS)  # its partner is already queued
    assert out.aux.stamp_ns == 500 * MS and sync.counters.matched == 1
    assert not sync.mismatch_fallback(182 * MS)


def test_aux_grace_period_starts_with_the_clock():
    # activated under use_sim_time before any /clock: the node clock read 0
    sync = make(timeout_ms=500, start_ms=0)
    first = 1_700_000_000_000 * MS  # bag time
    assert not sync.aux_fallback(first)  # not "silent since 1970"
    assert not sync.aux_fallback(first + 400 * MS) and sync.aux_fallback(first + 501 * MS)
    # the clock jumps back (bag loop): the grace period starts over
    assert not sync.aux_fallback(first - 10_000 * MS)
    assert sync.aux_fallback(first - 10_000 * MS + 501 * MS)


def test_rgb_only_without_aux_stream():
    sync = make(aux=False)
    out = sync.add_rgb(S(5), 0)
    assert out.aux is None and sync.counters.rgb_only == 1
    assert sync.add_aux(S(5), 0) is None and sync.counters.aux_received == 0


def test_time_jump_back_clears_queues():
    sync = make()
    sync.add_rgb(S(1000), 0)
    sync.add_rgb(S(10), 0)  # bag looped
    assert sync.counters.time_jumps == 1 and sync.queued == (1, 0)
    assert sync.add_aux(S(12), 0).rgb.stamp_ns == 10 * MS


def test_set_params_validates_and_shrinks_queues():
    sync = make(queue=5, slop_ms=1)
    for t in range(5):
        sync.add_rgb(S(t * 100), 0)
    sync.set_params(20 * MS, 2, 1000 * MS)
    assert sync.queued == (2, 0)
    with pytest.raises(ValueError):
        sync.set_params(-1, 2, 1)


def test_mailbox_keeps_only_the_newest_and_counts_drops():
    box: NewestSetMailbox[int] = NewestSetMailbox()
    assert not box.put(1)
    assert box.put(2) and box.put(3)
    assert box.take(0.01) == 3 and box.dropped == 2 and box.delivered == 1
    assert box.take(0.01) is None
    got = []
    t = threading.Thread(target=lambda: got.append(box.take(5.0)))
    t.start()
    box.put(7)
    t.join(2)
    assert got == [7]
    box.close()
    assert box.take(5.0) is None and box.closed


def test_frame_history_by_stamp_latest_and_nearest_aux():
    h = FrameHistory(capacity=3)
    for t in (10, 20, 30, 40):
        h.add_rgb(S(t))
        h.add_aux(S(t + 2))
    assert len(h) == 3 and h.get(10 * MS) is None  # evicted
    assert h.get(20 * MS).stamp_ns == 20 * MS and h.get(0).stamp_ns == 40 * MS
    assert h.stamp_range() == (20 * MS, 40 * MS)
    assert h.nearest_aux(30 * MS, 5 * MS).stamp_ns == 32 * MS
    assert h.nearest_aux(30 * MS, 1 * MS) is None
