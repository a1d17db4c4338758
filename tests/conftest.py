"""Fixtures shared by every test: each dispatcher implementation in turn;
and a default timeout per test in the directories that start servers."""

from pathlib import Path

import pytest

from qroute.routing import IMPLEMENTATIONS


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def impl(request):
    """A Dispatcher class: "reference" always, "compiled" when it was built."""
    return IMPLEMENTATIONS[request.param]


# seconds per test (pytest-timeout) by test directory, unless the test sets its
# own; server runs also bound their bodies (tests.api._util)
TIMEOUTS = {"api": 30, "events": 30, "webhooks": 30, "agents": 30, "supervisors": 30, "callbacks": 30,
            "reports": 30, "ops": 20,
            "durability": 60}  # the kill tests start two server processes


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        directory = Path(item.fspath).parent
        if directory.parent == here and directory.name in TIMEOUTS and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TIMEOUTS[directory.name]))
