"""The wallboard's model and rendering, without a server."""

from __future__ import annotations

from rich.console import Console

from qroute.top import Board, render
from qroute.v1 import event_pb2, queue_pb2

NOW = 1_000_000_000


def known_board() -> Board:
    board = Board(sl_threshold_s=20)
    board.set_status("sales", waiting=3, longest_wait_s=75, ewt_s=40, abandoned=2)
    board.set_status("support", waiting=0, longest_wait_s=0, ewt_s=-1, abandoned=0)
    for rid, state, ago_s in (("ann", "ready", 5), ("bob", "busy", 65), ("cy", "wrapup", 3), ("dee", "away", 600),
                              ("eve", "logged_out", 0)):
        board.set_recipient(rid, state, NOW - ago_s * 1000)
    for rid in ("ann", "bob", "cy", "dee"):
        board.apply("queue.member_added", NOW, "sales", recipient_id=rid)
    board.apply("queue.member_added", NOW, "support", recipient_id="eve")
    # answered in the last 15 min: 3 within 20 s, 1 after; one older than 15 min is left out
    for ago_s, wait_ms in ((1000, 90_000), (400, 45_000), (300, 20_000), (120, 19_000), (60, 5_000)):
        board.apply("session.connected", NOW - ago_s * 1000, "s", queue_id="sales", wait_ms=wait_ms)
    return board


def draw(board: Board) -> str:
    console = Console(record=True, width=120, color_system=None, force_terminal=False)
    console.print(render(board, NOW))
    return console.export_text()


def row(text: str, first: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.strip("│┃ ").startswith(first))
    return [cell.strip() for cell in line.replace("┃", "│").split("│") if cell.strip()]


def test_render_known_state():
    text = draw(known_board())
    # queue, waiting, longest, EWT, avail, busy, wrap, away, SL 15m, abandons
    assert row(text, "sales") == ["sales", "3", "1:15", "0:40", "1", "1", "1", "1", "75%", "2"]
    assert row(text, "support") == ["support", "0", "0:00", "-", "0", "0", "0", "0", "-", "0"]
    assert row(text, "bob") == ["bob", "busy", "1:05"]
    assert row(text, "dee") == ["dee", "away", "10:00"]
    assert "sort: queue" in text and "filter: all queues" in text


def test_events_update_the_board():
    board = known_board()
    board.apply("recipient.state_changed", NOW - 2000, "ann", state=4)  # ringing
    board.apply("recipient.logged_out", NOW - 1000, "dee")
    board.apply("session.abandoned", NOW, "s9", queue_id="sales")
    text = draw(board)
    assert row(text, "sales")[4:8] == ["0", "2", "1", "0"]
    assert row(text, "ann") == ["ann", "ringing", "0:02"] and row(text, "sales")[-1] == "3"


def test_sort_filter_and_quit_keys():
    board = known_board()
    board.set_status("billing", waiting=9, longest_wait_s=1, ewt_s=0, abandoned=0)
    assert [q.id for q in board.shown_queues()] == ["billing", "sales", "support"]
    board.key("s")
    assert board.sort == "waiting" and [q.id for q in board.shown_queues()] == ["billing", "sales", "support"]
    board.key("s")
    assert [q.id for q in board.shown_queues()] == ["sales", "billing", "support"]
    board.key("f")
    board.key("f")
    assert board.queue_filter == "sales"
    text = draw(board)
    assert "filter: sales" in text and "support" not in text and "eve" not in text and "ann" in text
    assert board.key("q") is False


def test_problem_is_shown():
    board = known_board()
    board.problem = "server 127.0.0.1:1 unreachable (UNAVAILABLE): retrying"
    assert "unreachable (UNAVAILABLE): retrying" in draw(board)


def test_many_events_only_mark_the_board_dirty():
    board = known_board()
    board.dirty, seen = False, board.events_seen
    for i in range(10_000):
        board.apply("recipient.state_changed", NOW + i, "ann", state=2 + i % 5)
    assert board.dirty and board.events_seen - seen == 10_000


def test_a_status_that_comes_after_its_queue_was_deleted_is_ignored():
    board = known_board()
    late = queue_pb2.QueueStatus(queue_id="support", stats=queue_pb2.QueueStats(active_session_count=4))
    board.apply("queue.deleted", NOW, "support")
    board.apply_status(late)
    assert "support" not in board.queues
    board.apply("queue.created", NOW, "support")  # the same id again: a new queue
    board.apply_status(late)
    assert board.queues["support"].waiting == 4


def test_service_level_counts_only_the_last_15_minutes_in_constant_memory():
    board = Board(sl_threshold_s=20)
    for second in range(3600):  # an hour, 3 calls a second: two in time, one late
        for wait_ms in (1_000, 5_000, 60_000):
            board.apply("session.connected", NOW + second * 1000, "s", queue_id="sales", wait_ms=wait_ms)
    view = board.queues["sales"]
    assert len(view.answers) <= 15 * 60 + 1  # one bucket a second of the window
    assert board.service_level("sales", NOW + 3600 * 1000) == 2 / 3
    assert board.service_level("sales", NOW + 5 * 3600 * 1000) is None and view.answered == 0


def test_away_for_one_queue_counts_as_away_there_only():
    board = known_board()
    board.apply("queue.member_added", NOW, "support", recipient_id="ann")
    board.apply("recipient.state_changed", NOW, "ann", queue_id="sales", state=2, availability=2)
    assert board.counts("sales")["available"] == 0 and board.counts("sales")["away"] == 2
    assert board.counts("support")["available"] == 1
    board.key("f")
    assert board.queue_filter == "sales" and row(draw(board), "ann")[:2] == ["ann", "away"]
    board.apply("recipient.state_changed", NOW, "ann", queue_id="sales", state=2, availability=1)
    assert board.counts("sales")["available"] == 1


def test_event_messages_take_the_same_path():
    board = known_board()
    batch = event_pb2.EventBatch(through_sequence=42, events=[
        event_pb2.Event(sequence=40, type="recipient.state_changed", entity_id="ann",
                        recipient=event_pb2.RecipientPayload(state=5)),
        event_pb2.Event(sequence=41, type="session.offered", entity_id="s1", queue_id="sales"),  # not the board's
    ])
    batch.events[0].time.FromMilliseconds(NOW - 3000)
    board.absorb(batch)
    assert board.last_sequence == 42 and board.events_seen == known_board().events_seen + 2
    assert row(draw(board), "ann") == ["ann", "busy", "0:03"]
