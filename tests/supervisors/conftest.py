"""Fixtures of the supervisor tests (seed 004): ``api``, a real server
harness, as the agent-side tests have it."""

from __future__ import annotations


from tests.agents.conftest import api  # noqa: F401 (a fixture, found by name)
