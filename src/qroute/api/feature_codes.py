"""What ExecuteAction (Qubicle's ``qubicle_recipient`` callflow module)
decides before it acts: which recipient a call is, by caller id or pin, and
whether pin attempts from a number (or a whole account) are throttled."""

from __future__ import annotations

import hmac
import re
from collections import OrderedDict, deque

MAX_INPUT = 64  # characters of a caller number or pin
_NUMBER_NOISE = re.compile(r"[\s\-.()/]")

# Wrong pins allowed per window before the cool-down: from one calling number, and in one
# account (caller ids can be spoofed, so a per-number limit alone would not stop guessing).
WRONG_PINS_PER_NUMBER = 5
WRONG_PINS_PER_ACCOUNT = 50
PIN_WINDOW_MS = 5 * 60_000
PIN_COOLDOWN_MS = 5 * 60_000
TRACKED_NUMBERS = 10_000  # calling numbers whose wrong pins are remembered (oldest forgotten first)


def caller_digits(number: str) -> str:
    """The form caller ids are compared in: ``"+1 (555) 010-0100"`` -> ``"15550100100"``."""
    stripped = _NUMBER_NOISE.sub("", number)
    return stripped[1:] if stripped.startswith("+") else stripped


def by_caller_id(recipients, number: str) -> list[str]:
    """Ids of the recipients (``LiveRecipient``s) having ``number`` among
    their caller ids. O(recipients x caller ids): a feature code is rare."""
    wanted = caller_digits(number)
    if not wanted:
        return []
    return [r.config.id for r in recipients
            if any(caller_digits(known) == wanted for known in r.config.caller_ids)]


def by_pin(recipients, pin: str) -> list[str]:
    """Ids of the recipients whose pincode is ``pin`` (compared in constant time)."""
    if not pin:
        return []
    entered = pin.encode()
    return [r.config.id for r in recipients
            if r.config.pincode and hmac.compare_digest(r.config.pincode.encode(), entered)]


class PinThrottle:
    """Counts wrong pins per (account, calling number) and per account over
    a sliding ``window_ms``; past a limit, that number (or the whole account)
    is ``blocked`` for ``cooldown_ms``. A right pin clears its number's
    count. Lives in memory: a restart forgets it."""

    def __init__(self, clock, per_number: int = WRONG_PINS_PER_NUMBER, per_account: int = WRONG_PINS_PER_ACCOUNT,
                 window_ms: int = PIN_WINDOW_MS, cooldown_ms: int = PIN_COOLDOWN_MS,
                 tracked_numbers: int = TRACKED_NUMBERS) -> None:
        self.clock = clock
        self.per_number, self.per_account = per_number, per_account
        self.window_ms, self.cooldown_ms = window_ms, cooldown_ms
        self.tracked_numbers = tracked_numbers
        self._wrong: OrderedDict[tuple[str, str | None], deque[int]] = OrderedDict()  # None: the whole account
        self._blocked_until: dict[tuple[str, str | None], int] = {}

    def blocked(self, account_id: str, number: str) -> bool:
        now = self.clock.now_ms()
        for key in ((account_id, None), (account_id, caller_digits(number))):
            until = self._blocked_until.get(key)
            if until is not None:
                if now < until:
                    return True
                del self._blocked_until[key]
        return False

    def wrong(self, account_id: str, number: str) -> None:
        now = self.clock.now_ms()
        for key, limit in (((account_id, None), self.per_account),
                           ((account_id, caller_digits(number)), self.per_number)):
            times = self._wrong.pop(key, None) or deque()
            self._wrong[key] = times  # most recently wrong last: the first to forget is the oldest
            times.append(now)
            while times and times[0] <= now - self.window_ms:
                times.popleft()
            if len(times) >= limit:
                self._blocked_until[key] = now + self.cooldown_ms
                times.clear()
        while len(self._wrong) > self.tracked_numbers:
            self._wrong.popitem(last=False)

    def right(self, account_id: str, number: str) -> None:
        self._wrong.pop((account_id, caller_digits(number)), None)
