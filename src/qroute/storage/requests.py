"""What mutating requests answered, by request id: a retry gets the first
answer, also after a restart.

``RequestLog`` holds the answers in memory (per account, oldest first) and
makes the ops that keep the ``idempotency`` table in step: the caller
commits ``remember``'s ops with the change the answer is for, so an answer
is kept exactly when its change is. Bounded two ways: answers older than
``retention_ms`` are forgotten (in memory as they come up, in storage by a
``TrimIdempotency`` at most every ``trim_every_ms``), and an account keeps
at most ``per_account`` answers (the oldest go first, a delete each).
Answers are opaque bytes: the API layer encodes and decodes them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from qroute.storage.ops import DeleteIdempotency, Op, PutIdempotency, TrimIdempotency
from qroute.storage.records import IdempotencyRecord

__all__ = ["RequestLog", "RequestKey", "RETENTION_MS", "PER_ACCOUNT"]

RETENTION_MS = 24 * 3600 * 1000
PER_ACCOUNT = 100_000
TRIM_EVERY_MS = 60_000

# (caller, method, request_id) within an account: caller is "" for the
# account's keys, or the recipient a recipient key acts for.
RequestKey = tuple[str, str, str]


class RequestLog:
    def __init__(self, retention_ms: int = RETENTION_MS, per_account: int = PER_ACCOUNT,
                 trim_every_ms: int = TRIM_EVERY_MS) -> None:
        if retention_ms <= 0 or per_account <= 0:
            raise ValueError("retention_ms and per_account must be positive")
        self.retention_ms = retention_ms
        self.per_account = per_account
        self.trim_every_ms = trim_every_ms
        # account -> key -> (created_ms, answer), oldest first
        self._accounts: dict[str, OrderedDict[RequestKey, tuple[int, bytes]]] = {}
        self._next_trim_ms = 0

    def __len__(self) -> int:
        return sum(map(len, self._accounts.values()))

    def load(self, records: Iterable[IdempotencyRecord], now_ms: int) -> list[Op]:
        """Seed from storage (``Snapshot.idempotency``, oldest first) at
        startup; returns the ops that drop what is past its retention."""
        for record in records:
            key = (record.caller, record.method, record.request_id)
            self._put(record.account_id, key, record.created_ms, bytes(record.response))
        evicted = []
        for account_id, answers in self._accounts.items():
            evicted += self._evict(account_id, answers, now_ms)
        self._next_trim_ms = now_ms + self.trim_every_ms
        return [*evicted, TrimIdempotency(now_ms - self.retention_ms)]

    def get(self, account_id: str, key: RequestKey, now_ms: int) -> bytes | None:
        """The answer recorded for ``key`` (None if none, or past its retention)."""
        answers = self._accounts.get(account_id)
        if answers is None:
            return None
        found = answers.get(key)
        if found is None or found[0] < now_ms - self.retention_ms:
            return None
        return found[1]

    def remember(self, account_id: str, key: RequestKey, answer: bytes, now_ms: int) -> list[Op]:
        """Record the answer to ``key`` (the first one stays); returns the
        ops to commit with the change it answers for."""
        answers = self._accounts.get(account_id)
        if answers is not None and key in answers:
            return []
        answers = self._put(account_id, key, now_ms, answer)
        caller, method, request_id = key
        ops: list[Op] = [PutIdempotency(account_id, request_id, method, answer, now_ms, caller)]
        ops += self._evict(account_id, answers, now_ms)
        if now_ms >= self._next_trim_ms:
            self._next_trim_ms = now_ms + self.trim_every_ms
            ops.append(TrimIdempotency(now_ms - self.retention_ms))
        return ops

    def _put(self, account_id: str, key: RequestKey, created_ms: int,
             answer: bytes) -> OrderedDict[RequestKey, tuple[int, bytes]]:
        answers = self._accounts.get(account_id)
        if answers is None:
            answers = self._accounts[account_id] = OrderedDict()
        answers[key] = (created_ms, answer)
        return answers

    def _evict(self, account_id: str, answers: OrderedDict, now_ms: int) -> list[Op]:
        """Drop the answers over the account's limit (a delete each) and,
        in memory, those past their retention (``TrimIdempotency`` deletes
        them in storage)."""
        ops: list[Op] = []
        while len(answers) > self.per_account:
            (caller, method, request_id), _ = answers.popitem(last=False)
            ops.append(DeleteIdempotency(account_id, request_id, method, caller))
        oldest_kept = now_ms - self.retention_ms
        while answers:
            key = next(iter(answers))
            if answers[key][0] >= oldest_kept:
                break
            del answers[key]
        return ops
