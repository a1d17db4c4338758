"""Fixtures of the core benchmarks: one case per dispatcher implementation.

The compiled dispatcher runs the standard workload (500 queues, 10,000
recipients, 100,000 waiting sessions). The pure-Python reference runs a tenth
of it (50 queues, 1,000 recipients, 10,000 sessions): on the full workload
one of its full passes takes most of a second, and a pytest-benchmark run
would take minutes. The case ids say which size ran. ``qroute bench core``
runs both implementations on the standard workload and prints the ratio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from qroute.bench import workload as W
from qroute.routing import IMPLEMENTATIONS

SIZES = {"compiled": ("standard", W.STANDARD), "reference": ("tenth", W.STANDARD.scaled(0.1))}
SEED = 1


@dataclass
class Case:
    implementation: str
    cls: type
    size_name: str
    workload: W.Workload


def _case_ids() -> list[str]:
    return [f"{name}-{SIZES[name][0]}" for name in sorted(IMPLEMENTATIONS)]


@pytest.fixture(params=sorted(IMPLEMENTATIONS), ids=_case_ids())
def case(request: Any) -> Case:
    """An implementation with the workload it is benchmarked on."""
    name = request.param
    size_name, size = SIZES[name]
    return Case(name, IMPLEMENTATIONS[name], size_name, W.make_workload(size, SEED))
