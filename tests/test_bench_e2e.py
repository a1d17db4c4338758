"""``qroute bench e2e``, briefly: its own server and the bare ceiling as child
processes, a few agents, three seconds of calls. Checks the tool, not speed."""

from __future__ import annotations

import json

import pytest

from qroute.bench import procfs
from qroute.cli import main


def bench(tmp_path, *options: str) -> tuple[int, dict]:
    """``qroute bench e2e`` briefly (one round of short probes, no progress bar): its status and JSON report."""
    path = tmp_path / "e2e.json"
    status = main(["bench", "e2e", "--rounds", "1", "--no-progress", "--json", str(path), *options])
    return status, json.loads(path.read_text())


@pytest.mark.timeout(120)
def test_short_run_against_its_own_server(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("QROUTE_ADMIN_KEY", raising=False)
    status, report = bench(tmp_path, "--duration", "3", "--agents", "20", "--talk-ms", "50", "--probe-seconds", "0.3",
                           "--subscribers", "1", "--hold", "200", "--latency-seconds", "1", "--latency-rate", "50")
    out = capsys.readouterr().out
    assert status == 0, report["error_samples"]
    assert report["errors"] == 0 and "errors" in out and out.splitlines()[-1].startswith("e2e: ")
    assert report["calls_per_s"] > 0 and report["main_phase"]["lives"] > 0
    latency = report["offer_latency_ms"]
    assert latency["count"] > 0 and 0 < latency["p50"] <= latency["p99"] <= latency["p999"]
    for method in ("EnqueueStream", "Connect.accept", "Connect.hangup", "Connect.finish_wrapup"):
        assert report["rpc_latency_ms"][method]["count"] > 0, method
    assert report["ceiling"]["unary_per_s"] > 0 and report["ceiling"]["stream_msgs_per_s"] > 0
    # the unary ceiling in Enqueue's shape (protobuf, API key): measured, and answered with a Session
    assert report["ceiling"]["shaped_unary_per_s"] > 0 and report["rpc_latency_ms"]["bare Shaped"]["count"] > 0
    assert 0 < report["qroute"]["enqueue_vs_shaped"]
    assert report["qroute"]["enqueue_per_s"] > 0 and report["qroute"]["enqueue_stream_per_s"] > 0
    assert 0 < report["qroute"]["enqueue_vs_unary"] and 0 < report["qroute"]["enqueue_stream_vs_stream"]
    assert report["server_peak_rss_mb"] > 10 and report["server_cpu_cores"] > 0
    assert report["event_deliveries_per_s"] is None or report["event_deliveries_per_s"] > 0
    light = report["light_load"]
    assert light["calls_per_second"] == 50 and light["offer_latency_ms"]["count"] > 0


@pytest.mark.timeout(120)
def test_unary_enqueue_with_poisson_arrivals(tmp_path, capsys):
    status, report = bench(tmp_path, "--duration", "2", "--agents", "5", "--talk-ms", "20", "--probe-seconds", "0.2",
                           "--enqueue", "unary", "--calls-per-second", "40", "--latency-seconds", "0")
    assert status == 0, report["error_samples"]
    assert report["rpc_latency_ms"]["Enqueue"]["count"] > 0
    assert 10 < report["enqueued_per_s"] < 100
    assert report["light_load"] is None


@pytest.mark.timeout(120)
def test_desktops_on_gateway_streams_and_several_enqueue_streams(tmp_path, capsys):
    status, report = bench(tmp_path, "--duration", "2", "--agents", "30", "--talk-ms", "20", "--probe-seconds", "0.2",
                           "--desktops", "gateway", "--enqueue-streams", "3", "--latency-seconds", "0")
    assert status == 0, report["error_samples"]
    assert report["errors"] == 0 and report["main_phase"]["lives"] > 0
    for method in ("ConnectGateway.accept", "ConnectGateway.hangup", "ConnectGateway.finish_wrapup"):
        assert report["rpc_latency_ms"][method]["count"] > 0, method
    assert "Connect.accept" not in report["rpc_latency_ms"]
    assert "on ConnectGateway streams" in capsys.readouterr().out


def test_procfs_reads_this_process():
    import os

    assert procfs.cpu_seconds(os.getpid()) > 0
    assert procfs.memory_mb(os.getpid(), "VmHWM") >= procfs.memory_mb(os.getpid(), "VmRSS") > 1
    assert procfs.cpu_seconds(2**22 + 12345) is None and procfs.memory_mb(2**22 + 12345) is None


def test_procfs_counts_live_children():
    import os
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in procfs._family(os.getpid())[1:]
        assert procfs.memory_mb(os.getpid(), "VmRSS") > procfs.memory_mb(child.pid, "VmRSS") > 0
        own = procfs.cpu_seconds(os.getpid(), children=False)  # read first: our CPU time only grows
        assert procfs.cpu_seconds(os.getpid()) >= own
    finally:
        child.kill()
        child.wait()


@pytest.mark.timeout(60)
def test_unreachable_target_fails_with_a_message(capsys):
    status = main(["bench", "e2e", "--target", "127.0.0.1:1", "--admin-key", "qr_admin_x", "--no-progress"])
    captured = capsys.readouterr()
    assert status == 1
    assert "the benchmark failed" in captured.err and "UNAVAILABLE" in captured.err
    assert "Traceback" not in captured.err + captured.out
