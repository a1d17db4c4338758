"""The dispatcher: which waiting session goes to which recipient.

``Dispatcher`` is the compiled ``qroute.routing._core`` when it was built and
``QROUTE_NO_EXTENSIONS`` is not set to 1, otherwise the pure-Python
``qroute.routing._reference``. Both obey the rules written in
``_reference``'s docstrings and return identical results.
"""

import os

from qroute.routing import _reference
from qroute.routing._reference import (
    BOUNCED,
    BUSY,
    FREE,
    LEAST_CALLS,
    LEAST_OFFERS,
    LEAST_TALK_TIME,
    LINEAR,
    MAX_LEVEL,
    MAX_SKILLS,
    MISSED,
    MOST_IDLE,
    MOST_SKILLED,
    OFFER,
    OFFERED,
    RANDOM,
    RECORD_SIZE,
    RING_ALL,
    ROUND_ROBIN,
    ROUTERS,
    TIMEOUT,
    WRAPUP,
    WRAPUP_END,
)

IMPLEMENTATION = "reference"
Dispatcher = _reference.Dispatcher
compiled = None

if os.environ.get("QROUTE_NO_EXTENSIONS") != "1":
    try:
        from qroute.routing import _core as compiled
    except ImportError:  # built without a compiler: the reference serves, slower
        compiled = None
    else:
        Dispatcher = compiled.Dispatcher
        IMPLEMENTATION = "compiled"

IMPLEMENTATIONS = {"reference": _reference.Dispatcher}
if compiled is not None:
    IMPLEMENTATIONS["compiled"] = compiled.Dispatcher

__all__ = [
    "BOUNCED", "BUSY", "Dispatcher", "FREE", "IMPLEMENTATION", "IMPLEMENTATIONS",
    "LEAST_CALLS", "LEAST_OFFERS", "LEAST_TALK_TIME", "LINEAR", "MAX_LEVEL", "MAX_SKILLS",
    "MISSED", "MOST_IDLE", "MOST_SKILLED", "OFFER", "OFFERED", "RANDOM", "RECORD_SIZE",
    "RING_ALL", "ROUND_ROBIN", "ROUTERS", "TIMEOUT", "WRAPUP", "WRAPUP_END",
]
