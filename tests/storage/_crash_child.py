"""Child process for the kill -9 tests (run as a script, not collected).

    python _crash_child.py DB_PATH SYNCHRONOUS MODE

MODE "self": 20 writes awaited one by one, then 500 concurrent writes
awaited together, then SIGKILL to itself right after the last acknowledgement.
MODE "stream": batches of 50 concurrent writes forever, printing
"acked N" (every write < N is acknowledged) after each batch; the parent
kills it.
Each write stores a live session, its events and a finished record.
"""

import asyncio
import os
import signal
import sys

from qroute.storage import AppendEvents, InsertFinishedSession, PutLiveSession, SqliteStorage


def ops(n: int):
    return (
        PutLiveSession("acc", f"s{n}", {"queue_id": "q1", "entered_at_ms": 10_000 + n, "seq": n}),
        AppendEvents([("acc", n + 1, 10_000 + n, "session.created", "session", f"s{n}", b"{}")]),
        InsertFinishedSession(
            "acc", f"f{n}", "q1", None, n, n + 1, "abandoned", 1, 0, 0, ["q1"], {}),
    )


async def main(path: str, synchronous: str, mode: str) -> None:
    storage = SqliteStorage(path, synchronous)
    await storage.start()
    if mode == "self":
        for n in range(20):
            await storage.write(*ops(n))
        await asyncio.gather(*(storage.write(*ops(n)) for n in range(20, 520)))
        os.kill(os.getpid(), signal.SIGKILL)
    n = 0
    while True:
        await asyncio.gather(*(storage.write(*ops(i)) for i in range(n, n + 50)))
        n += 50
        sys.stdout.write(f"acked {n}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
