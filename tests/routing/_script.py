"""Random operation scripts run on several dispatchers at once.

``Twins`` calls the same method with the same arguments on every dispatcher
(the reference first) and requires the same outcome from each: the same
return value, of the same types (an ``array('q')``, a list, a tuple, a bool),
or the same exception type and message. ``_check()`` runs on each after every
call, and ``Script.compare_state`` compares everything the public API shows.

``Script`` draws its operations from a ``Source``: hypothesis' ``data`` in the
differential tests, a seeded ``random.Random`` in the stress test. It picks
mostly valid targets (an outstanding offer to accept, a busy recipient to hang
up) from what the reference reports through its public API, and sometimes
invalid ones on purpose (unknown or malformed handles, out-of-range settings),
whose exceptions must match too.
"""

from __future__ import annotations

import random
from array import array

from qroute.routing import _reference as R

TIME_STEPS = (0, 0, 1, 100, 250, 500, 500, 1000, 1000, 1500, 2500, 6000, 20000)
EXPANSIONS = ((), (), ((2000, 2),), ((1000, 2), (3000, 3)), ((0, 2),), ((500, 3), (500, 2), (4000, 9)))
TIMEOUTS = (3000, 8000, 30000, 120000, 120000)
BAD_EXPANSIONS = ([(-1, 2)], [(100, 0)], [(1,)], [(100, 2, 3)], None)
# Lookups the reference answers as dict lookups: unknown, out of range,
# wrong type, unhashable.
BAD_LOOKUPS = (-1, 2**31, 2**70, "x", None, [], 99)
# Handles a creation must refuse.
BAD_HANDLES = (-1, 2**31, "7", 1.5, None, [])
SKILL_IDS = (0, 1, 2, 3, 4, 5, 63, 64, 130, 255)  # one per mask word too
BAD_SKILLS = ({256: 1}, {-1: 1}, {"a": 1}, {1: 11}, {1: -1}, {1: 2.0}, None)


class RandomSource:
    """Draws from a seeded ``random.Random``."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def pick(self, options):
        return options[self.rng.randrange(len(options))]


class DataSource:
    """Draws from hypothesis' ``st.data()`` (so failures shrink)."""

    def __init__(self, data) -> None:
        from hypothesis import strategies as st

        self.data = data
        self.st = st

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(self.st.integers(lo, hi))

    def pick(self, options):
        return options[self.data.draw(self.st.integers(0, len(options) - 1))]


def shape(value):
    """A comparable form of a result that keeps the types that matter."""
    if isinstance(value, array):
        return ("array", value.typecode, value.tolist())
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [shape(item) for item in value])
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", value)
    return (type(value).__name__, value)


class Twins:
    """The same calls on every dispatcher; identical outcomes required."""

    def __init__(self, classes, seed: int, check: bool = True) -> None:
        self.dispatchers = [cls(seed=seed) for cls in classes]
        self.names = [cls.__module__ for cls in classes]
        self.check = check
        self.log: list[str] = []

    @property
    def ref(self):
        return self.dispatchers[0]

    def call(self, method: str, *args, log: bool = True, check: bool = True):
        """Returns ``(True, result)`` or ``(False, exception)`` of the reference.
        ``check``: run every dispatcher's ``_check()`` afterwards."""
        if log:
            self.log.append(f"{method}{args!r}")
        outcomes = []
        for dispatcher in self.dispatchers:
            try:
                result = getattr(dispatcher, method)(*args)
            except Exception as exc:  # noqa: BLE001 - compared below
                outcomes.append((False, exc, (type(exc), exc.args)))
            else:
                outcomes.append((True, result, shape(result)))
        first = outcomes[0]
        for name, outcome in zip(self.names[1:], outcomes[1:]):
            if outcome[0] != first[0] or outcome[2] != first[2]:
                raise AssertionError(
                    f"{method}{args!r}: {self.names[0]} gave {first[2]!r}, {name} gave {outcome[2]!r}\n"
                    + self.trace())
        if check and self.check:
            for dispatcher in self.dispatchers:
                dispatcher._check()
        return first[0], first[1]

    def trace(self, last: int = 60) -> str:
        return "last calls:\n  " + "\n  ".join(self.log[-last:])


class Script:
    """Draws operations from ``source`` and runs them on ``twins``."""

    def __init__(self, source, twins: Twins, queues: int = 4, recipients: int = 8,
                 sessions: int = 40) -> None:
        self.src = source
        self.twins = twins
        self.queue_handles = list(range(queues)) + [300]
        self.recipient_handles = list(range(recipients)) + [1000]
        self.session_handles = list(range(sessions)) + [5000]
        self.now = 0
        self.seq = 0
        # What the reference reports (refreshed by compare_state).
        self.queues: set[int] = set()
        self.recipients: dict[int, tuple] = {}
        self.sessions: dict[int, tuple] = {}
        self.touched: set = set()  # session handles enqueued since the last comparison
        self.keys: dict = {}  # session -> (queue, priority, entered_at, seq) it was enqueued with
        self.members: dict[tuple[int, int], bool] = {}  # (q, r) -> ready for q

    # ------------------------------------------------------------- drawing

    def chance(self, percent: int) -> bool:
        return self.src.integer(1, 100) <= percent

    def skills(self, allow_bad: bool = True) -> dict:
        """A session's required skills: often none, usually common ones."""
        if allow_bad and self.chance(3):
            return self.src.pick(BAD_SKILLS)
        if self.chance(40):
            return {}
        ids = SKILL_IDS if self.chance(20) else SKILL_IDS[:4]
        return {self.src.pick(ids): self.src.pick((0, 0, 1, 2, 3, 5)) for _ in range(self.src.integer(1, 2))}

    def recipient_skills(self, allow_bad: bool = True) -> dict:
        """A recipient's skills: several, at varied levels."""
        if allow_bad and self.chance(3):
            return self.src.pick(BAD_SKILLS)
        return {self.src.pick(SKILL_IDS): self.src.pick((0, 1, 2, 3, 4, 5, 7, 10))
                for _ in range(self.src.integer(0, 6))}

    def some_queue(self):
        if self.chance(5):
            return self.src.pick(BAD_LOOKUPS)
        return self.src.pick(self.queue_handles)

    def some_recipient(self):
        if self.chance(5):
            return self.src.pick(BAD_LOOKUPS)
        return self.src.pick(self.recipient_handles)

    def some_session(self):
        if self.chance(5):
            return self.src.pick(BAD_LOOKUPS)
        return self.src.pick(self.session_handles)

    def existing(self, pool, fallback):
        pool = sorted(pool)
        if pool and not self.chance(5):
            handle = self.src.pick(pool)
            # A lookup is a dict lookup in the reference: 3.0 finds handle 3.
            return float(handle) if self.chance(2) else handle
        return fallback()

    def free_session_handle(self):
        free = [s for s in self.session_handles if s not in self.sessions]
        if free and not self.chance(5):
            return free[0] if self.chance(70) else self.src.pick(free)
        return self.src.pick(self.session_handles) if not self.chance(20) else self.src.pick(BAD_HANDLES)

    # ----------------------------------------------------------------- run

    def setup(self) -> None:
        call = self.twins.call
        queues = self.src.integer(1, min(3, len(self.queue_handles) - 1))
        for q in range(queues):
            call("set_queue", q, self.src.integer(1, 9), self.src.pick((1000, 2000, 5000)),
                 self.src.pick(TIMEOUTS), self.src.pick(EXPANSIONS))
        for r in range(self.src.integer(1, len(self.recipient_handles) - 1)):
            call("add_recipient", r, self.recipient_skills(False), self.src.integer(0, 2),
                 self.src.pick((0, 0, 500)))
            for q in range(queues):
                if self.chance(50):
                    call("add_member", q, r, self.src.integer(1, 3))
                    self.members[(q, r)] = True
            if self.chance(80):
                call("set_ready", r, True, self.now)
        self.compare_state()

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.step()
            self.compare_state()
        self.now += 100_000
        self.twins.call("dispatch", self.now)
        self.compare_state()

    def step(self) -> None:
        src, call = self.src, self.twins.call
        op = src.pick(OPS)
        if op == "dispatch":
            self.now += src.pick(TIME_STEPS) if not self.chance(2) else -100
            call("dispatch", self.now)
        elif op == "enqueue":
            entered = self.now - src.pick((0, 0, 0, 300, 2500, 7000, -200))
            if self.chance(10):
                seq = self.seq - 1  # equal keys: the insertion order must hold
            else:
                seq = self.seq
                self.seq += 1
            q = self.existing(self.queues, self.some_queue)
            s = self.free_session_handle()
            self.enqueue(s, q, src.pick((0, 0, 1, 2, -3, 2**40)), entered, seq, self.skills())
        elif op == "enqueue_twin":
            # Same queue, priority, entered_at and seq as a waiting session, other
            # skills: equal keys in two groups keep the groups' order (queue_order).
            waiting = [s for s, info in self.sessions.items() if not info[2] and s in self.keys]
            if waiting:
                q, priority, entered, seq = self.keys[src.pick(sorted(waiting))]
                self.enqueue(self.free_session_handle(), q, priority, entered, seq, self.skills(False))
        elif op == "requeue":
            # a transfer: leave, come back (maybe elsewhere) keeping entered_at
            waiting = [s for s, info in self.sessions.items() if not info[2]]
            if waiting:
                s = src.pick(sorted(waiting))
                ok, _ = call("remove_session", s)
                q = self.existing(self.queues, self.some_queue)
                self.enqueue(s, q, src.integer(0, 2), self.now - src.pick((0, 3000)), self.seq, self.skills(False))
                self.seq += 1
        elif op in ("accept", "reject", "miss"):
            offers = sorted((s, r) for s, info in self.sessions.items() for r in info[2])
            if offers and not self.chance(5):
                s, r = src.pick(offers)
            else:
                s, r = self.some_session(), self.some_recipient()
            if op == "accept":
                call("accept", s, r, self.now)
            else:
                call("reject", s, r, self.now, op == "miss")
        elif op == "hangup":
            busy = [r for r, stats in self.recipients.items() if stats[0] == R.BUSY]
            r = self.existing(busy, self.some_recipient)
            call("hangup", r, self.now, src.pick((0, 0, 700, 3000, -1)))
        elif op == "end_wrapup":
            wrapping = [r for r, stats in self.recipients.items() if stats[0] == R.WRAPUP]
            call("end_wrapup", self.existing(wrapping, self.some_recipient), self.now)
        elif op == "set_ready":
            r = self.existing(self.recipients, self.some_recipient)
            call("set_ready", r, src.pick((True, True, False, 1, 0)), self.now)
        elif op == "set_member_ready":
            if self.members and not self.chance(5):
                q, r = src.pick(sorted(self.members))
                ready = not self.members[(q, r)] if not self.chance(10) else self.members[(q, r)]
            else:
                q, r, ready = self.some_queue(), self.some_recipient(), True
            ok, _ = call("set_member_ready", q, r, ready)
            if ok:
                self.members[(q, r)] = bool(ready)
        elif op == "remove_session":
            call("remove_session", self.existing(self.sessions, self.some_session))
        elif op == "add_recipient":
            free = [r for r in self.recipient_handles if r not in self.recipients]
            if free and self.chance(85):
                r = src.pick(free)
            else:
                r = src.pick(self.recipient_handles) if not self.chance(20) else src.pick(BAD_HANDLES)
            ok, _ = call("add_recipient", r, self.recipient_skills(), src.pick((0, 0, 1, 2, 3, -1)),
                         src.pick((0, 0, 300, -5)))
            if ok and self.queues and self.chance(80):  # an agent logging in
                for q in sorted(self.queues):
                    if self.chance(60):
                        call("add_member", q, r, src.pick((1, 1, 2, 3)))
                        self.members[(q, r)] = True
                call("set_ready", r, True, self.now)
        elif op == "update_recipient":
            call("update_recipient", self.existing(self.recipients, self.some_recipient), self.recipient_skills(),
                 src.pick((0, 0, 1, 2, -1)), src.pick((0, 0, 300, 1500, -1)))
        elif op == "remove_recipient":
            r = self.existing(self.recipients, self.some_recipient)
            ok, _ = call("remove_recipient", r)
            if ok:
                self.members = {key: v for key, v in self.members.items() if key[1] != r}
        elif op == "add_member":
            q = self.existing(self.queues, self.some_queue)
            r = self.existing(self.recipients, self.some_recipient)
            ok, _ = call("add_member", q, r, src.pick((1, 1, 2, 3, 0)))
            if ok:
                self.members.setdefault((q, r), True)
        elif op == "remove_member":
            if self.members and not self.chance(10):
                q, r = src.pick(sorted(self.members))
            else:
                q, r = self.some_queue(), self.some_recipient()
            ok, _ = call("remove_member", q, r)
            if ok:
                self.members.pop((q, r), None)
        elif op == "set_queue":
            q = src.pick(self.queue_handles) if not self.chance(3) else src.pick(BAD_HANDLES)
            router = src.integer(1, 9) if not self.chance(3) else src.pick((0, 10, "1", None))
            ring = src.pick((500, 1000, 2000, 5000)) if not self.chance(3) else src.pick((0, -5))
            timeout = src.pick(TIMEOUTS) if not self.chance(3) else src.pick((0, -1))
            expansion = src.pick(EXPANSIONS) if not self.chance(3) else src.pick(BAD_EXPANSIONS)
            call("set_queue", q, router, ring, timeout, expansion)
        elif op == "remove_queue":
            q = self.existing(self.queues, self.some_queue)
            ok, _ = call("remove_queue", q)
            if ok:
                self.members = {key: v for key, v in self.members.items() if key[0] != q}
        elif op == "restore_recipient":
            call("restore_recipient", self.existing(self.recipients, self.some_recipient),
                 src.integer(0, 5), src.integer(0, 9), src.pick((0, 1000, 60000)), self.now - src.integer(0, 9000))
        elif op == "start_call":
            free = [r for r, stats in self.recipients.items() if stats[0] == R.FREE]
            call("start_call", self.existing(free, self.some_recipient), self.now)
        elif op == "lookup":
            method = src.pick(("queue_order", "waiting_count", "eligible_count", "session_info",
                               "recipient_stats"))
            target = self.some_session() if method == "session_info" else (
                self.some_recipient() if method == "recipient_stats" else self.some_queue())
            call(method, self.src.pick(BAD_LOOKUPS) if self.chance(50) else target)
        else:  # pragma: no cover
            raise AssertionError(op)

    def enqueue(self, s, q, priority, entered, seq, skills) -> None:
        ok, _ = self.twins.call("enqueue", s, q, priority, entered, seq, skills, self.now)
        if ok:
            self.touched.add(s)
            self.keys[s] = (q, priority, entered, seq)

    # --------------------------------------------------------------- state

    def compare_state(self) -> None:
        """Every public reading of every handle in use must match."""
        call = self.twins.call
        self.queues = set()
        for q in self.queue_handles:
            ok, _ = call("queue_order", q, log=False, check=False)
            if ok:
                self.queues.add(q)
                call("waiting_count", q, log=False, check=False)
                call("eligible_count", q, log=False, check=False)
        self.recipients = {}
        for r in self.recipient_handles:
            ok, stats = call("recipient_stats", r, log=False, check=False)
            if ok:
                self.recipients[r] = stats
        # Sessions appear only by enqueue: the others stay unknown (which the
        # "lookup" operation and invalid calls check now and then).
        handles = sorted((set(self.sessions) | self.touched) & set(self.session_handles))
        self.touched = set()
        self.sessions = {}
        for s in handles:
            ok, info = call("session_info", s, log=False, check=False)
            if ok:
                self.sessions[s] = info
        self.members = {key: v for key, v in self.members.items()
                        if key[0] in self.queues and key[1] in self.recipients}
        call("__len__", log=False, check=False)
        for dispatcher in self.twins.dispatchers[1:]:
            ref = self.twins.ref
            assert (dispatcher.passes, dispatcher.matches) == (ref.passes, ref.matches), self.twins.trace()


OPS = (
    ["dispatch"] * 12 + ["enqueue"] * 7 + ["enqueue_twin"] * 2 + ["accept"] * 3 + ["reject"] * 2 + ["miss"] * 2
    + ["hangup"] * 3 + ["end_wrapup", "set_ready", "set_ready", "set_ready", "set_member_ready",
                        "set_member_ready", "remove_session", "requeue", "add_recipient", "add_recipient",
                        "update_recipient", "remove_recipient", "add_member", "add_member",
                        "remove_member", "set_queue", "remove_queue", "restore_recipient",
                        "start_call", "lookup"]
)
