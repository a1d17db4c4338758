"""Acknowledged means durable: across stop/start, and across kill -9 of a
real process right after it was told its writes were committed."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import qroute
from qroute.storage import (
    PutAccount,
    PutConfig,
    PutLiveSession,
    PutMeta,
    PutRecipientState,
    SqliteStorage,
)

from ._util import run, session_doc

CHILD = Path(__file__).with_name("_crash_child.py")


def child_env():
    # The child imports the same qroute as this process (src/ or installed).
    env = dict(os.environ)
    package_root = os.path.dirname(os.path.dirname(qroute.__file__))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    return env


def reload(path):
    async def main():
        async with SqliteStorage(path) as storage:
            snapshot = storage.load_all()
            finished = await storage.read(
                lambda conn: {row[0] for row in conn.execute(
                    "SELECT session_id FROM finished_sessions")})
            return snapshot, finished
    return run(main())


def assert_acknowledged_kept(path, acked: int):
    snapshot, finished = reload(path)
    sessions = {record.session_id for record in snapshot.live_sessions}
    assert {f"s{n}" for n in range(acked)} <= sessions
    assert {f"f{n}" for n in range(acked)} <= finished
    assert snapshot.max_event_sequence["acc"] >= acked
    # Routing order survived: entered_at_ms ascending within the queue.
    entered = [record.doc["entered_at_ms"] for record in snapshot.live_sessions]
    assert entered == sorted(entered)


def test_everything_survives_stop_and_start(tmp_path):
    path = tmp_path / "q.db"

    async def write():
        async with SqliteStorage(path) as storage:
            await storage.write(
                PutMeta("admin_key_hash", "abc"),
                PutAccount("acc", {"name": "Acme"}),
                PutConfig("acc", "queue", "q1", {"router": "round_robin"}),
                PutRecipientState("acc", "r1", {"logged_in": True}),
            )
            await storage.write(
                *(PutLiveSession("acc", f"s{n}", session_doc(n)) for n in range(100)))

    run(write())
    snapshot, _ = reload(path)
    assert snapshot.meta == {"admin_key_hash": "abc"}
    assert snapshot.accounts == {"acc": {"name": "Acme"}}
    assert snapshot.configs == {("acc", "queue"): {"q1": {"router": "round_robin"}}}
    assert snapshot.recipient_states == {("acc", "r1"): {"logged_in": True}}
    assert [r.doc for r in snapshot.live_sessions] == [session_doc(n) for n in range(100)]


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
def test_kill_9_right_after_the_acknowledgement(tmp_path, synchronous):
    path = tmp_path / "q.db"
    child = subprocess.run(
        [sys.executable, str(CHILD), str(path), synchronous, "self"],
        env=child_env(), capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert_acknowledged_kept(path, 520)


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
def test_kill_9_while_writing(tmp_path, synchronous):
    path = tmp_path / "q.db"
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(path), synchronous, "stream"],
        env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        acked = 0
        for line in child.stdout:
            acked = int(line.split()[1])
            if acked >= 2000:
                break
        child.send_signal(signal.SIGKILL)
        # Lines written before the kill are acknowledgements too.
        rest, errors = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL, errors
    for line in rest.splitlines():
        acked = int(line.split()[1])
    assert acked >= 2000, errors
    assert_acknowledged_kept(path, acked)
