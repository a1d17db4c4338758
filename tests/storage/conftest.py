"""Fixtures of the storage tests."""

import functools

import pytest

from qroute.storage import SqliteStorage


@pytest.fixture(params=["process", "thread"])
def open_storage(request):
    """``SqliteStorage`` with its write connection in a child process (the default) or the writer thread."""
    return functools.partial(SqliteStorage, writer_process=request.param == "process")
