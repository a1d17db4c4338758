"""``qroute demo``, for three seconds: calls flow, then how to connect."""

from __future__ import annotations

import re

import pytest

from qroute.cli import main


@pytest.mark.timeout(60)
def test_demo_runs_and_says_how_to_connect(capsys):
    status = main(["demo", "--duration", "3", "--exit", "--listen", "127.0.0.1:0", "--calls-per-second", "8"])
    out = capsys.readouterr().out
    assert status == 0
    assert "Traceback" not in out
    for queue in ("sales", "support", "billing"):
        assert queue in out
    assert int(re.search(r"callers (\d+)", out).group(1)) > 0
    assert int(re.search(r"answered (\d+)", out).group(1)) > 0
    key = re.search(r"Its API key:\s+(qr_\S+)", out).group(1)
    assert f"authorization: Bearer {key}" in out and "qroute.v1.SessionService/Enqueue" in out
    assert "Ctrl-C" not in out  # --exit: the server stopped
