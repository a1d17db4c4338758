"""The reference dispatcher against the brute-force model: random valid
operation scripts must give identical records after every pass."""

from hypothesis import HealthCheck, given, settings, strategies as st

from qroute.routing import _reference as R

from .model import ModelDispatcher

OPS = ["dispatch", "enqueue", "dispatch", "ready", "dispatch", "unready", "dispatch", "accept",
       "reject", "dispatch", "miss", "hangup", "dispatch", "end_wrapup", "member_ready",
       "dispatch", "abandon", "update", "remove_member", "dispatch", "remove_recipient",
       "add_member", "requeue", "enqueue", "ready", "member_ready", "dispatch"]
SKILLS = st.dictionaries(st.integers(0, 5), st.integers(0, 10), max_size=3)
# Sessions often share a profile, so groups hold several sessions and a new or
# returning caller may land ahead of a group's head (the group-level marks).
SESSION_SKILLS = st.one_of(st.sampled_from([{}, {1: 2}, {2: 0, 3: 4}]), SKILLS)


def _run(data, impl_cls):
    ref = impl_cls(seed=7)
    model = ModelDispatcher(seed=7)
    now = 0
    seq = 0
    next_session = 0

    def both(name, *args):
        a = getattr(ref, name)(*args)
        b = getattr(model, name)(*args)
        if name == "dispatch":
            a = list(a)
        assert a == b, (name, args, a, b)
        return a

    n_queues = data.draw(st.integers(1, 3))
    for q in range(n_queues):
        expansion = data.draw(st.sampled_from([(), ((2000, 2),), ((1000, 2), (3000, 3))]))
        both("set_queue", q, data.draw(st.sampled_from(sorted(R.ROUTERS))),
             data.draw(st.integers(1000, 5000)), data.draw(st.integers(3000, 20000)), expansion)
    n_recipients = data.draw(st.integers(1, 6))
    for r in range(n_recipients):
        both("add_recipient", r, data.draw(SKILLS), data.draw(st.integers(0, 2)),
             data.draw(st.sampled_from([0, 0, 500])))
        for q in range(n_queues):
            if data.draw(st.booleans()):
                both("add_member", q, r, data.draw(st.integers(1, 3)))
    recipients = set(range(n_recipients))

    for _ in range(data.draw(st.integers(20, 150))):
        op = data.draw(st.sampled_from(OPS))
        offers = [(rec.offer_session, r) for r, rec in ref._recipients.items() if rec.state == R.OFFERED]
        busy = [r for r, rec in ref._recipients.items() if rec.state == R.BUSY]
        if op == "enqueue":
            q = data.draw(st.integers(0, n_queues - 1))
            entered = now - data.draw(st.sampled_from([0, 0, 500, 2500, 5000]))
            both("enqueue", next_session, q, data.draw(st.integers(0, 2)), entered, seq,
                 data.draw(SESSION_SKILLS), now)
            next_session += 1
            seq += 1
        elif op in ("ready", "unready") and recipients:
            both("set_ready", data.draw(st.sampled_from(sorted(recipients))), op == "ready", now)
        elif op == "dispatch":
            now += data.draw(st.sampled_from([0, 1, 250, 600, 1000, 1500, 2500, 6000]))
            both("dispatch", now)
        elif op in ("accept", "reject", "miss") and offers:
            s, r = data.draw(st.sampled_from(sorted(offers)))
            if op == "accept":
                both("accept", s, r, now)
            else:
                both("reject", s, r, now, op == "miss")
        elif op == "hangup" and busy:
            both("hangup", data.draw(st.sampled_from(sorted(busy))), now,
                 data.draw(st.sampled_from([0, 700])))
        elif op == "end_wrapup" and recipients:
            both("end_wrapup", data.draw(st.sampled_from(sorted(recipients))), now)
        elif op == "abandon" and ref._sessions:
            both("remove_session", data.draw(st.sampled_from(sorted(ref._sessions))))
        elif op == "member_ready":
            q = data.draw(st.integers(0, n_queues - 1))
            members = sorted(ref._queues[q].members)
            if members:
                r = data.draw(st.sampled_from(members))
                both("set_member_ready", q, r, not ref._queues[q].members[r].ready)
        elif op == "update" and recipients:
            both("update_recipient", data.draw(st.sampled_from(sorted(recipients))), data.draw(SKILLS),
                 data.draw(st.integers(0, 2)), data.draw(st.sampled_from([0, 300])))
        elif op == "remove_member":
            q = data.draw(st.integers(0, n_queues - 1))
            members = sorted(ref._queues[q].members)
            if members:
                both("remove_member", q, data.draw(st.sampled_from(members)))
        elif op == "add_member" and recipients:
            both("add_member", data.draw(st.integers(0, n_queues - 1)),
                 data.draw(st.sampled_from(sorted(recipients))), data.draw(st.integers(1, 3)))
        elif op == "remove_recipient" and recipients:
            r = data.draw(st.sampled_from(sorted(recipients)))
            both("remove_recipient", r)
            recipients.discard(r)
        elif op == "requeue" and ref._sessions:
            # a transfer: leave, and come back in another queue keeping entered_at
            s = data.draw(st.sampled_from(sorted(ref._sessions)))
            session = ref._sessions[s]
            entered, prio, skills = session.entered_at, session.priority, dict(ref._reqset_items[session.reqset])
            both("remove_session", s)
            both("enqueue", s, data.draw(st.integers(0, n_queues - 1)), prio, entered, seq, skills, now)
            seq += 1
        ref._check()
        for r in recipients:
            assert ref.recipient_stats(r) == model.recipient_stats(r)
        for q in range(n_queues):
            assert ref.queue_order(q) == model.queue_order(q)
    now += 100_000
    both("dispatch", now)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_reference_matches_brute_force_model(data):
    _run(data, R.Dispatcher)
