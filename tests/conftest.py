"""Fixtures shared by every test: each dispatcher implementation in turn."""

import pytest

from qroute.routing import IMPLEMENTATIONS


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def impl(request):
    """A Dispatcher class: "reference" always, "compiled" when it was built."""
    return IMPLEMENTATIONS[request.param]
