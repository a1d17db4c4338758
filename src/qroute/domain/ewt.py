"""Estimated wait time (EWT) from the queue's recent service rate.

A caller with ``ahead`` sessions in front of it is served when ``ahead + 1``
recipients have become free. Free recipients serve at once; the rest come
free at the queue's service rate: ``serving / handle_time``, where
``serving`` counts the recipients working the queue (ready or on a call) and
``handle_time`` is a moving average of talk plus wrap-up time of calls the
queue answered recently. So the estimate follows staffing and call length as
they change, not a fixed average.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_HANDLE_MS = 120_000  # before a queue has answered anything
SMOOTHING = 0.1  # weight of the newest call in the moving average


@dataclass(slots=True)
class ServiceRate:
    handle_ms: float = DEFAULT_HANDLE_MS
    observed: int = 0
    error_sum_ms: float = 0.0  # |predicted - actual| over answered sessions
    error_count: int = 0

    def record_handled(self, talk_ms: int, wrapup_ms: int) -> None:
        sample = max(0, talk_ms) + max(0, wrapup_ms)
        if self.observed == 0:
            self.handle_ms = float(sample)
        else:
            self.handle_ms += SMOOTHING * (sample - self.handle_ms)
        self.observed += 1

    def record_wait(self, predicted_ms: int, actual_ms: int) -> None:
        if predicted_ms >= 0:
            self.error_sum_ms += abs(predicted_ms - actual_ms)
            self.error_count += 1

    @property
    def mean_abs_error_ms(self) -> float:
        return self.error_sum_ms / self.error_count if self.error_count else 0.0

    def estimate_ms(self, ahead: int, free: int, serving: int) -> int:
        """Wait of a caller with ``ahead`` sessions before it; -1 when nobody
        serves the queue (the wait is unbounded)."""
        if ahead < free:
            return 0
        if serving <= 0:
            return -1
        return int((ahead - free + 1) * self.handle_ms / serving)
