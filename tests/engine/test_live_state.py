"""LiveState writes a document once per journal write, as the last of the
write's events left it, and the same rows as writing it after every event."""

from qroute.events.state import LiveState
from qroute.storage import DeleteLiveSession, PutLiveSession, PutRecipientState


def life_of_a_call(center):
    center.queue("q", agent_wrapup_time=5)
    center.agent("ann", "q")
    session = center.call("q", caller_number="+15550100")
    center.tick()
    center.answer("ann", after_ms=2000)
    center.clock.advance(60_000)
    center.floor.hangup(session.id)
    return session


def test_one_write_stores_each_document_once_as_the_last_event_left_it(center):
    session = life_of_a_call(center)
    ops = LiveState()(center.events)
    recipients = [op for op in ops if isinstance(op, PutRecipientState)]
    assert [op.recipient_id for op in recipients] == ["ann"]
    assert recipients[0].doc["state"] == "wrapup" and recipients[0].doc["calls_taken"] == 1
    assert not [op for op in ops if isinstance(op, PutLiveSession)]  # it ended: deleted, never put
    assert [op.session_id for op in ops if isinstance(op, DeleteLiveSession)] == [session.id]


DOCUMENTS = (PutRecipientState, PutLiveSession, DeleteLiveSession)


def rows(ops, last: dict, others: list) -> None:
    """Sort ``ops`` into what each document row holds last (its JSON, or
    deleted) and the other ops, in order."""
    for op in ops:
        if isinstance(op, DOCUMENTS):
            last[getattr(op, "recipient_id", None), getattr(op, "session_id", None)] = getattr(op, "doc_json", None)
        else:
            others.append(op)


def test_batched_and_event_by_event_leave_the_same_rows(center):
    life_of_a_call(center)
    center.agent("bob", "q")
    center.call("q", caller_number="+15550101")  # stays connected: its row is put, not deleted
    center.tick()
    center.answer("bob", after_ms=1000)
    batched, batched_others = {}, []
    rows(LiveState()(center.events), batched, batched_others)
    one_by_one, state = ({}, []), LiveState()
    for event in center.events:
        rows(state([event]), *one_by_one)
    assert one_by_one == (batched, batched_others)
    stored = {key for key, doc in batched.items() if doc is not None}
    assert {recipient for recipient, _ in stored} >= {"ann", "bob"} and len(stored) == 3  # ann, bob, bob's call
