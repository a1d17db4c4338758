"""Behaviour of each routing rule, on every dispatcher implementation."""

import pytest

from qroute.routing import (
    BOUNCED,
    BUSY,
    FREE,
    LEAST_CALLS,
    LEAST_OFFERS,
    LEAST_TALK_TIME,
    LINEAR,
    MISSED,
    MOST_IDLE,
    MOST_SKILLED,
    OFFER,
    OFFERED,
    RANDOM,
    RING_ALL,
    ROUND_ROBIN,
    TIMEOUT,
    WRAPUP,
    WRAPUP_END,
)

HOUR = 3_600_000


def records(out):
    values = list(out)
    return [tuple(values[i:i + 4]) for i in range(0, len(values), 4)]


def offers(out):
    return [(s, r) for kind, s, r, _ in records(out) if kind == OFFER]


class Floor:
    """A small call center around one dispatcher, for readable scenarios."""

    def __init__(self, impl, router=ROUND_ROBIN, recipients=3, ring_ms=20_000, timeout_ms=HOUR,
                 expansion=(), skills=None, seed=0):
        self.d = impl(seed=seed)
        self.d.set_queue(0, router, ring_ms, timeout_ms, expansion)
        self.seq = 0
        for r in range(recipients):
            self.d.add_recipient(r, (skills or {}).get(r, {}))
            self.d.add_member(0, r)
            self.d.set_ready(r, True, 0)

    def call(self, s, q=0, priority=0, entered=None, skills=None, now=0):
        self.d.enqueue(s, q, priority, now if entered is None else entered, self.seq, skills or {}, now)
        self.seq += 1

    def serve(self, s, r, start, end, wrapup=0):
        """Accept an offer at ``start`` and hang up at ``end``."""
        self.d.accept(s, r, start)
        self.d.hangup(r, end, wrapup)

    def check(self):
        self.d._check()


def test_round_robin_rotates_and_wraps(impl):
    f = Floor(impl, ROUND_ROBIN)
    picked = []
    for s in range(7):
        f.call(s, now=s)
        (match,) = offers(f.d.dispatch(s))
        picked.append(match[1])
        f.serve(s, match[1], s, s)
        f.check()
    assert picked == [0, 1, 2, 0, 1, 2, 0]


def test_round_robin_skips_busy_members_and_keeps_cursor(impl):
    f = Floor(impl, ROUND_ROBIN)
    f.call(0)
    assert offers(f.d.dispatch(0)) == [(0, 0)]
    f.d.accept(0, 0, 0)  # r0 busy
    f.call(1)
    f.call(2)
    assert offers(f.d.dispatch(1)) == [(1, 1), (2, 2)]
    f.serve(1, 1, 2, 2)
    f.serve(2, 2, 2, 2)
    f.d.hangup(0, 3)
    f.call(3, now=4)
    assert offers(f.d.dispatch(4)) == [(3, 0)]  # the cursor wrapped past r2


def test_linear_always_takes_the_first_member(impl):
    f = Floor(impl, LINEAR)
    for s in range(3):
        f.call(s, now=s)
        assert offers(f.d.dispatch(s)) == [(s, 0)]
        f.serve(s, 0, s, s)


def test_most_idle_picks_longest_idle_then_member_order(impl):
    f = Floor(impl, MOST_IDLE)
    f.d.set_ready(0, False, 0)
    f.d.set_ready(0, True, 50)  # r0 idle since 50; r1, r2 since 0
    f.call(0, now=60)
    f.call(1, now=60)
    assert offers(f.d.dispatch(60)) == [(0, 1), (1, 2)]
    f.call(2, now=61)
    assert offers(f.d.dispatch(61)) == [(2, 0)]


def test_least_calls_least_offers_least_talk_time(impl):
    for router in (LEAST_CALLS, LEAST_OFFERS, LEAST_TALK_TIME):
        f = Floor(impl, router, recipients=2)
        f.call(0)
        assert offers(f.d.dispatch(0)) == [(0, 0)]  # a tie: longest idle, then member order
        f.serve(0, 0, 0, 5_000)
        f.d.set_ready(1, False, 5_000)
        f.d.set_ready(1, True, 5_000)  # r1 now idle less long than r0
        f.call(1, now=6_000)
        # r0 has one call, one offer and 5 s talk; r1 none of these
        assert offers(f.d.dispatch(6_000)) == [(1, 1)], router
        f.check()


def test_least_offers_counts_missed_offers(impl):
    f = Floor(impl, LEAST_OFFERS, recipients=2)
    f.call(0)
    assert offers(f.d.dispatch(0)) == [(0, 0)]
    f.d.reject(0, 0, 10)  # r0: one offer, no call
    assert offers(f.d.dispatch(10)) == [(0, 1)]
    f.d.reject(0, 1, 20)
    f.d.set_ready(1, False, 20)
    f.d.set_ready(1, True, 20)
    assert f.d.recipient_stats(0)[2] == 1 and f.d.recipient_stats(1)[2] == 1
    assert offers(f.d.dispatch(30)) == [(0, 0)]  # equal offers, r0 idle longer (since 10)


def test_random_is_seeded_and_reaches_everyone(impl):
    def picks(seed):
        f = Floor(impl, RANDOM, recipients=4, seed=seed)
        chosen = []
        for s in range(40):
            f.call(s, now=s)
            (match,) = offers(f.d.dispatch(s))
            chosen.append(match[1])
            f.serve(s, match[1], s, s)
        return chosen

    assert picks(1) == picks(1)
    assert picks(1) != picks(2)
    assert set(picks(3)) == {0, 1, 2, 3}


def test_most_skilled_sums_required_levels(impl):
    f = Floor(impl, MOST_SKILLED, skills={0: {1: 3, 2: 9}, 1: {1: 8, 2: 3}, 2: {1: 7, 2: 6}})
    f.call(0, skills={1: 1, 2: 1})
    assert offers(f.d.dispatch(0)) == [(0, 2)]  # 13 beats 12 and 11
    f.call(1, skills={1: 1})
    assert offers(f.d.dispatch(1)) == [(1, 1)]  # 8 beats 3


def test_ring_all_offers_everyone_and_first_accept_wins(impl):
    f = Floor(impl, RING_ALL)
    f.call(0)
    assert offers(f.d.dispatch(0)) == [(0, 0), (0, 1), (0, 2)]
    assert f.d.accept(0, 1, 100) == [0, 2]
    assert [f.d.recipient_stats(r)[0] for r in range(3)] == [FREE, BUSY, FREE]
    f.check()
    f.call(1, now=200)
    assert offers(f.d.dispatch(200)) == [(1, 0), (1, 2)]


def test_ring_all_session_returns_only_when_every_offer_failed(impl):
    f = Floor(impl, RING_ALL, recipients=2)
    f.call(0)
    f.d.dispatch(0)
    assert f.d.reject(0, 0, 10) == (False, False)
    assert f.d.reject(0, 1, 20) == (True, False)
    assert f.d.queue_order(0) == [0]
    f.check()


def test_global_order_priority_then_entered_at_then_arrival(impl):
    f = Floor(impl, LINEAR, recipients=0)
    f.d.set_queue(1, LINEAR, 20_000, HOUR)
    f.call(0, q=0, priority=0, entered=10)
    f.call(1, q=1, priority=5, entered=50)
    f.call(2, q=0, priority=0, entered=5)
    f.call(3, q=1, priority=0, entered=5)  # same entered_at as s2, arrived later
    f.d.add_recipient(0)
    f.d.add_member(0, 0)
    f.d.add_member(1, 0)
    served = []
    for step in range(4):
        f.d.set_ready(0, True, 100 + step)
        (match,) = offers(f.d.dispatch(100 + step))
        served.append(match[0])
        f.serve(match[0], 0, 100 + step, 100 + step)
        f.d.set_ready(0, False, 100 + step)
    assert served == [1, 2, 3, 0]


def test_skill_levels_are_minimums_and_zero_means_any(impl):
    f = Floor(impl, LINEAR, skills={0: {7: 2}, 1: {7: 5}, 2: {}})
    f.call(0, skills={7: 4})
    f.call(1, skills={7: 0})
    f.call(2, skills={9: 1})  # nobody has skill 9
    f.call(3)
    assert offers(f.d.dispatch(0)) == [(0, 1), (1, 0), (3, 2)]
    assert f.d.queue_order(0) == [2]


def test_255_is_a_valid_skill_and_256_is_not(impl):
    f = Floor(impl, LINEAR, skills={0: {255: 10, 0: 1, 128: 3}})
    f.call(0, skills={255: 10, 128: 3})
    assert offers(f.d.dispatch(0)) == [(0, 0)]
    with pytest.raises(ValueError, match="skill must be in 0..255"):
        f.call(1, skills={256: 1})
    with pytest.raises(ValueError, match="level"):
        f.call(2, skills={3: 11})


def test_only_the_lowest_tier_with_an_eligible_member_is_used(impl):
    d = impl()
    d.set_queue(0, MOST_IDLE, 20_000, HOUR)
    for r, tier in ((0, 2), (1, 1), (2, 2)):
        d.add_recipient(r)
        d.add_member(0, r, tier)
        d.set_ready(r, True, 0)
    d.set_ready(0, False, 0)
    d.set_ready(0, True, -10)  # r0 idle longest, but tier 2
    d.enqueue(0, 0, 0, 0, 0, {}, 0)
    d.enqueue(1, 0, 0, 0, 1, {}, 0)
    assert offers(d.dispatch(0)) == [(0, 1), (1, 0)]


def test_tier_expansion_widens_with_wait(impl):
    d = impl()
    d.set_queue(0, LINEAR, 20_000, HOUR, [(10_000, 2), (30_000, 3)])
    for r, tier in ((0, 3), (1, 2)):
        d.add_recipient(r)
        d.add_member(0, r, tier)
        d.set_ready(r, True, 0)
    d.enqueue(0, 0, 0, 0, 0, {}, 0)
    assert offers(d.dispatch(0)) == []
    assert offers(d.dispatch(9_999)) == []
    assert offers(d.dispatch(10_000)) == [(0, 1)]
    d.accept(0, 1, 10_000)
    d.enqueue(1, 0, 0, 0, 1, {}, 10_000)  # entered_at kept from another queue
    assert offers(d.dispatch(10_001)) == []
    assert offers(d.dispatch(30_000)) == [(1, 0)]
    d._check()


def test_per_queue_availability(impl):
    f = Floor(impl, LINEAR, recipients=2)
    f.d.set_queue(1, LINEAR, 20_000, HOUR)
    f.d.add_member(1, 0)
    f.d.set_member_ready(0, 0, False)
    f.call(0, q=0)
    f.call(1, q=1)
    assert offers(f.d.dispatch(0)) == [(0, 1), (1, 0)]
    assert f.d.eligible_count(0) == 0


def test_ring_timeout_misses_and_bounced_limit_forces_away(impl):
    d = impl()
    d.set_queue(0, LINEAR, 1_000, HOUR)
    d.add_recipient(0, {}, 2)
    d.add_member(0, 0)
    d.set_ready(0, True, 0)
    d.enqueue(0, 0, 0, 0, 0, {}, 0)
    assert records(d.dispatch(0)) == [(OFFER, 0, 0, 0)]
    assert records(d.dispatch(999)) == []
    assert records(d.dispatch(1_500)) == [(MISSED, 0, 0, 0), (OFFER, 0, 0, 0)]
    assert d.recipient_stats(0)[4] == 1
    assert records(d.dispatch(2_500)) == [(MISSED, 0, 0, 0), (BOUNCED, 0, 0, 0)]
    assert d.recipient_stats(0)[0] == FREE and d.recipient_stats(0)[4] == 0
    assert records(d.dispatch(5_000)) == []  # forced away: no more offers
    d.set_ready(0, True, 5_000)
    assert records(d.dispatch(5_000)) == [(OFFER, 0, 0, 0)]
    d._check()


def test_wrapup_then_guard_timer(impl):
    d = impl()
    d.set_queue(0, LINEAR, 20_000, HOUR)
    d.add_recipient(0, {}, 0, 2_000)  # guard timer 2 s
    d.add_member(0, 0)
    d.set_ready(0, True, 0)
    d.enqueue(0, 0, 0, 0, 0, {}, 0)
    assert records(d.dispatch(1_000)) == []  # guard from becoming ready
    assert records(d.dispatch(2_000)) == [(OFFER, 0, 0, 0)]
    d.accept(0, 0, 2_000)
    d.hangup(0, 10_000, 5_000)
    assert d.recipient_stats(0)[0] == WRAPUP
    assert d.recipient_stats(0)[3] == 8_000  # talk time
    d.enqueue(1, 0, 0, 10_000, 1, {}, 10_000)
    assert records(d.dispatch(14_999)) == []
    assert records(d.dispatch(15_000)) == [(WRAPUP_END, -1, 0, -1)]
    assert records(d.dispatch(16_999)) == []
    assert records(d.dispatch(17_000)) == [(OFFER, 1, 0, 0)]
    assert d.recipient_stats(0)[5] == 15_000  # idle since the end of wrap-up


def test_end_wrapup_early(impl):
    f = Floor(impl, LINEAR, recipients=1)
    f.call(0)
    f.d.dispatch(0)
    f.serve(0, 0, 0, 100, wrapup=60_000)
    f.call(1, now=200)
    assert records(f.d.dispatch(200)) == []
    assert f.d.end_wrapup(0, 300) is True
    assert f.d.end_wrapup(0, 300) is False
    assert offers(f.d.dispatch(300)) == [(1, 0)]


def test_queue_timeout_waits_for_a_ringing_offer_to_end(impl):
    f = Floor(impl, LINEAR, recipients=1, ring_ms=5_000, timeout_ms=10_000)
    f.call(0, now=0)
    f.call(1, now=1_000)
    assert offers(f.d.dispatch(8_000)) == [(0, 0)]
    assert records(f.d.dispatch(11_000)) == [(TIMEOUT, 1, -1, 0)]  # s0 is ringing: not yet
    assert records(f.d.dispatch(13_000)) == [(MISSED, 0, 0, 0), (TIMEOUT, 0, -1, 0)]
    assert len(f.d) == 0
    f.check()


def test_removing_a_session_or_recipient_mid_offer_leaves_nothing_behind(impl):
    f = Floor(impl, RING_ALL, recipients=2)
    f.call(0)
    f.d.dispatch(0)
    assert f.d.remove_session(0) == [0, 1]
    assert [f.d.recipient_stats(r)[0] for r in range(2)] == [FREE, FREE]
    f.check()
    f.call(1, now=10)
    assert offers(f.d.dispatch(10)) == [(1, 0), (1, 1)]
    assert f.d.remove_recipient(0) == 1
    assert f.d.recipient_stats(1)[0] == OFFERED
    assert f.d.reject(1, 1, 20) == (True, False)
    assert f.d.queue_order(0) == [1]
    f.check()


def test_missed_session_keeps_its_place(impl):
    f = Floor(impl, LINEAR, recipients=1, ring_ms=1_000)
    f.call(0, now=0)
    f.d.dispatch(0)
    f.call(1, now=10)
    f.call(2, now=20)
    assert records(f.d.dispatch(1_000))[:2] == [(MISSED, 0, 0, 0), (OFFER, 0, 0, 0)]


def test_bad_input_is_refused_without_change(impl):
    d = impl()
    with pytest.raises(ValueError, match="router"):
        d.set_queue(0, 42, 1_000, HOUR)
    with pytest.raises(KeyError):
        d.enqueue(0, 0, 0, 0, 0, {}, 0)
    d.set_queue(0, LINEAR, 1_000, HOUR)
    d.add_recipient(0)
    with pytest.raises(ValueError, match="already exists"):
        d.add_recipient(0)
    d.enqueue(0, 0, 0, 0, 0, {}, 0)
    with pytest.raises(ValueError, match="already exists"):
        d.enqueue(0, 0, 0, 0, 0, {}, 0)
    with pytest.raises(ValueError, match="holds no offer"):
        d.accept(0, 0, 0)
    with pytest.raises(ValueError, match="not on a call"):
        d.hangup(0, 0)
    with pytest.raises(ValueError, match="still holds"):
        d.remove_queue(0)
    assert len(d) == 1
    d._check()


# A pass examines only what may have become matchable (see _reference's
# module doc); these check the marks that are easy to get wrong.

def test_caller_joining_ahead_of_a_group_is_examined(impl):
    # s1 has s0's needs and priority but waited longer (entered_at kept from
    # a transfer): it goes ahead of s0 and its wait allows tier 2, so it is
    # served although s0, the group's head so far, was not.
    d = impl()
    d.set_queue(0, LINEAR, 20_000, HOUR, [(2_000, 2)])
    d.add_recipient(0, {3: 5})
    d.add_member(0, 0, 2)
    d.set_ready(0, True, 0)
    d.enqueue(0, 0, 0, 10_000, 0, {3: 1}, 10_000)
    assert offers(d.dispatch(10_000)) == []
    d._check()
    d.enqueue(1, 0, 0, 7_000, 1, {3: 1}, 10_001)
    d._check()
    assert offers(d.dispatch(10_001)) == [(1, 0)]
    d._check()


def test_session_back_after_a_bounce_is_examined(impl):
    # s0 (waited long: tier 2) rings r0, which bounces and goes away; s1 (same
    # group, tier 1) failed meanwhile. Back at the head, s0 reaches r1 (tier 2),
    # though no recipient became available.
    d = impl()
    d.set_queue(0, LINEAR, 1_000, HOUR, [(2_000, 2)])
    d.add_recipient(0, {}, 1)
    d.add_recipient(1)
    d.add_member(0, 0, 2)
    d.set_ready(0, True, 0)
    d.enqueue(0, 0, 0, 0, 0, {}, 5_000)
    assert offers(d.dispatch(5_000)) == [(0, 0)]
    d.add_member(0, 1, 2)
    d.set_ready(1, True, 5_000)
    d.enqueue(1, 0, 0, 5_000, 1, {}, 5_000)
    assert offers(d.dispatch(5_000)) == []  # s1 may use tier 1 only
    d._check()
    assert records(d.dispatch(6_000)) == [(MISSED, 0, 0, 0), (BOUNCED, 0, 0, 0), (OFFER, 0, 1, 0)]
    d._check()


def test_freed_recipient_serves_only_what_it_has_skills_for(impl):
    # r0 frees up: only s1 (skill 2) is examined for it; s0 (skill 1) still
    # waits, and is served when a recipient with skill 1 frees up.
    d = impl()
    d.set_queue(0, MOST_IDLE, 20_000, HOUR)
    d.add_recipient(0, {2: 1})
    d.add_recipient(1, {1: 1, 2: 1})
    for r in (0, 1):
        d.add_member(0, r)
    d.enqueue(0, 0, 0, 0, 0, {1: 1}, 0)
    d.enqueue(1, 0, 0, 1, 1, {2: 1}, 0)
    assert offers(d.dispatch(0)) == []
    d.set_ready(0, True, 10)
    d._check()
    assert offers(d.dispatch(10)) == [(1, 0)]
    d.set_ready(1, True, 20)
    d._check()
    assert offers(d.dispatch(20)) == [(0, 1)]
    d._check()
