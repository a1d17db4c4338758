"""Helpers for the storage tests: run a coroutine with a timeout, failing
on any exception the event loop reported but nobody awaited."""

import asyncio


def run(coro, timeout: float = 30.0):
    """``asyncio.run(coro)`` under ``timeout`` seconds; fails the test if the
    loop's exception handler was called (e.g. an unretrieved future exception)."""
    loop_errors = []

    async def main():
        asyncio.get_running_loop().set_exception_handler(
            lambda loop, context: loop_errors.append(context))
        return await asyncio.wait_for(coro, timeout)

    result = asyncio.run(main())
    assert not loop_errors, loop_errors
    return result


def session_doc(n: int, queue_id: str = "q1", priority: int = 0, entered_at_ms: int | None = None,
                **extra) -> dict:
    """A live session document like the engine's (the storage only needs the
    keys it indexes)."""
    return {
        "queue_id": queue_id, "state": "waiting", "priority": priority,
        "entered_at_ms": 1_000 + n if entered_at_ms is None else entered_at_ms,
        "joined_at_ms": 1_000 + n, "seq": n, "skills": {"english": 3},
        "properties": {"caller": f"+31{n:08d}"}, "recipient_id": None, **extra,
    }
