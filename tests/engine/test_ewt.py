"""The estimated wait against the waits that really happen, on the virtual clock."""

import random

from qroute.domain.enums import SessionState


def run_steady_queue(center, agents, calls, mean_gap_ms, handle_ms, seed=11):
    """Poisson-ish arrivals, fixed handle time; agents answer at once.
    Returns [(predicted_ms, actual_ms)] for every answered call."""
    rng = random.Random(seed)
    center.queue(ring_timeout=30, timeout=7200)
    for i in range(agents):
        center.agent(f"r{i}", "q")
    arrivals = []
    t = 0
    for _ in range(calls):
        t += int(rng.expovariate(1 / mean_gap_ms))
        arrivals.append(t)
    start = center.clock.now_ms()
    hangups = {}  # session id -> hangup time
    pairs = []
    pending = list(arrivals)
    while pending or center.floor.sessions:
        now = center.clock.now_ms() - start
        while pending and pending[0] <= now:
            pending.pop(0)
            center.call()
        center.floor.run_pass()
        for recipient in center.floor.recipients.values():
            if recipient.offer is not None:
                session = center.floor.accept(recipient.offer.id, recipient.id)
                hangups[session.id] = center.clock.now_ms() + handle_ms
                pairs.append((session.estimated_wait_ms, session.wait_ms))
        for session_id, at in list(hangups.items()):
            if at <= center.clock.now_ms():
                center.floor.hangup(session_id)
                del hangups[session_id]
        center.clock.advance(250)
    return pairs


def test_estimate_follows_real_waits(center):
    pairs = run_steady_queue(center, agents=5, calls=600, mean_gap_ms=13_000, handle_ms=60_000)
    assert len(pairs) == 600
    waited = [actual for _, actual in pairs[100:]]  # after the service rate has been learned
    errors = [abs(predicted - actual) for predicted, actual in pairs[100:]]
    mean_wait = sum(waited) / len(waited)
    mean_error = sum(errors) / len(errors)
    assert mean_wait > 5_000, "the scenario must make callers wait"
    # The estimate is worth having: far better than guessing the average wait for everyone.
    naive_error = sum(abs(w - mean_wait) for w in waited) / len(waited)
    assert mean_error < 0.6 * naive_error, (mean_error, naive_error, mean_wait)
    status = center.floor.queue_status("q")
    assert status["ewt_mean_abs_error_ms"] > 0


def test_estimate_is_zero_with_free_agents_and_unbounded_without_any(center):
    center.queue()
    center.agent("alice", "q")
    session = center.call()
    assert session.estimated_wait_ms == 0
    center.queue("empty")
    lonely = center.call("empty")
    assert lonely.state == SessionState.WAITING and lonely.estimated_wait_ms == -1
    assert center.floor.queue_status("empty")["estimated_wait"] == -1
