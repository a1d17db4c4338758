"""The public enums; their values are the wire values of ``qroute.v1``."""

from enum import IntEnum


class Router(IntEnum):
    ROUND_ROBIN = 1
    MOST_IDLE = 2
    LEAST_CALLS = 3
    LEAST_OFFERS = 4
    LEAST_TALK_TIME = 5
    LINEAR = 6
    RANDOM = 7
    MOST_SKILLED = 8
    RING_ALL = 9


class RecipientState(IntEnum):
    LOGGED_OUT = 1
    READY = 2
    AWAY = 3
    RINGING = 4
    BUSY = 5
    WRAPUP = 6


class SessionState(IntEnum):
    WAITING = 1
    OFFERING = 2
    CONNECTED = 3
    ENDED = 4


class EndReason(IntEnum):
    COMPLETED = 1
    ABANDONED = 2
    TIMED_OUT = 3
    REJECTED_FULL = 4
    REJECTED_EMPTY = 5
    TRANSFERRED = 6
    REMOVED = 7


class Availability(IntEnum):
    READY = 1
    AWAY = 2


class AgentType(IntEnum):
    LOCAL = 1
    REMOTE = 2


class EventSource(IntEnum):
    API = 1
    PHONE = 2
    SYSTEM = 3


class OfferOutcome(IntEnum):
    ACCEPTED = 1
    REJECTED = 2
    MISSED = 3
    ANSWERED_ELSEWHERE = 4
    ABANDONED = 5
    WITHDRAWN = 6


# keyed by (enum, value): members of different IntEnums compare equal as ints
_LOWER_NAMES: dict[tuple[type, int], str] = {}


def lower_name(value: IntEnum) -> str:
    """``EndReason.TIMED_OUT`` -> ``"timed_out"``, the form events and records use."""
    key = (type(value), value)
    name = _LOWER_NAMES.get(key)
    if name is None:  # computed once per member: this runs for nearly every event
        name = _LOWER_NAMES[key] = value.name.lower()
    return name


class Channel(IntEnum):
    """How a lined-up (callback) caller reaches the agent (values as qroute.v1.CallbackChannel)."""

    CALL_BACK = 1
    CALL_IN = 2


class CallerState(IntEnum):
    """Values as qroute.v1.CallbackState."""

    WAITING = 1
    NOTIFIED = 2
    CONNECTED = 3
    FINISHED = 4
    TIME_OUT = 5


class ServiceState(IntEnum):
    """The call center's own view, as it reports it (values as qroute.v1.ServiceState)."""

    CONNECTED = 1
    DEFERRED = 2
    CANCELED = 3
    FINISHED = 4
