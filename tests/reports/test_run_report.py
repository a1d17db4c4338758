"""RunReport through a real server, over records placed on known dates.

The account is in America/New_York (EST, UTC-5, until 2018-03-11 02:00; EDT,
UTC-4, after), so a record's UTC date is often not its local date. Records
are given in UTC; the comment on each says its local time. Every expected
value below was worked out by hand from this table, and every report is
checked in both formats (JSON and CSV) against the same expectation.

A record falls on the local date of its end: a session when it ended, an
offer when it was accepted / missed / rejected / cancelled.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import grpc
import pytest

from qroute.client import Client
from qroute.storage import InsertFinishedSession, InsertOffer
from qroute.v1 import report_pb2, report_pb2_grpc

from tests.api._util import Api, fails

ZONE = "America/New_York"
R = report_pb2
QUEUES, RECIPIENTS = R.REPORT_KIND_QUEUES, R.REPORT_KIND_RECIPIENTS
DAILY, WEEKLY, MONTHLY = R.REPORT_PERIOD_DAILY, R.REPORT_PERIOD_WEEKLY, R.REPORT_PERIOD_MONTHLY


def utc(text: str) -> int:
    """Epoch ms of a UTC time "YYYY-MM-DD HH:MM[:SS[.fff]]"."""
    moment = datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
    return (moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(milliseconds=1)


# (session, queue, recipient, ended (UTC), end_reason, wait_ms, ring_ms, talk_ms)
SESSIONS = [
    ("S01", "sales", "ann", "2017-12-30 15:00", "completed", 10_000, 4_000, 60_000),       # 12-30 10:00
    ("S02", "sales", "bob", "2017-12-30 16:00", "completed", 20_000, 6_000, 120_000),      # 12-30 11:00
    ("S03", "sales", None, "2017-12-30 17:00", "abandoned", 5_000, 0, 0),                  # 12-30 12:00
    ("S15", "sales", "cy", "2017-12-30 21:00", "completed", 6_500, 7_000, 90_000),         # 12-30 16:00
    ("S04", "sales", None, "2017-12-31 13:00", "timed_out", 3_600_000, 0, 0),              # 12-31 08:00
    ("S05", "sales", "ann", "2018-01-01 04:30", "completed", 30_000, 5_000, 30_000),       # 12-31 23:30
    ("S07", "sales", "bob", "2018-01-01 05:01", "completed", 40_000, 8_000, 120_000),      # 01-01 00:01
    ("S06", "sales", None, "2018-01-01 05:10", "rejected_full", 0, 0, 0),                  # 01-01 00:10
    ("S08", "support", None, "2018-01-01 14:30", "rejected_empty", 0, 0, 0),               # 01-01 09:30
    ("S16", "sales", None, "2018-01-02 15:00", "removed", 7_000, 0, 0),                    # 01-02 10:00
    ("S17", "sales", None, "2018-01-02 15:30", "transferred", 9_000, 0, 0),                # 01-02 10:30
    ("S09", "support", "ann", "2018-01-02 19:00", "completed", 45_000, 3_000, 45_000),     # 01-02 14:00
    ("S10", "support", None, "2018-01-02 20:00", "abandoned", 12_000, 0, 0),               # 01-02 15:00
    ("S11", "sales", "bob", "2018-01-03 04:59:59.999", "completed", 3_000, 2_000, 3_000),  # 01-02 23:59:59.999
    ("S12", "sales", None, "2018-01-03 05:00", "abandoned", 1_000, 0, 0),                  # 01-03 00:00
    ("S13", "sales", None, "2017-12-30 04:59:59.999", "abandoned", 2_000, 0, 0),           # 12-29 23:59:59.999
    ("S14", "old", "ann", "2017-12-31 15:00", "completed", 8_000, 1_234, 8_000),           # 12-31 10:00
    ("S18", "sales", None, "2017-12-26 17:00", "abandoned", 1_000, 0, 0),                  # 12-26 12:00 (Tue)
    ("S19", "sales", None, "2017-12-27 05:00", "abandoned", 1_000, 0, 0),                  # 12-27 00:00 (Wed)
    ("S22", "sales", None, "2018-01-05 23:00", "timed_out", 600_000, 0, 0),                # 01-05 18:00 (Fri)
    ("S20", "sales", None, "2018-01-08 17:00", "abandoned", 1_000, 0, 0),                  # 01-08 12:00 (Mon)
    ("S21", "sales", None, "2018-01-10 17:00", "abandoned", 1_000, 0, 0),                  # 01-10 12:00 (Wed)
    ("S23", "sales", "bob", "2017-11-15 04:59:59.999", "completed", 99_000, 1_000, 1_000),  # 11-14 23:59:59.999
    ("S24", "sales", "bob", "2017-11-15 05:00", "completed", 4_000, 1_000, 1_000),         # 11-15 00:00
    ("S25", "sales", None, "2018-02-11 04:00", "timed_out", 500_000, 0, 0),                # 02-10 23:00
    ("S26", "sales", None, "2018-02-11 05:00", "abandoned", 1_000, 0, 0),                  # 02-11 00:00
    ("S29", "sales", None, "2018-03-11 04:59:59.999", "abandoned", 1_000, 0, 0),           # 03-10 23:59:59.999 EST
    ("S28", "sales", None, "2018-03-12 03:59:59.999", "abandoned", 1_000, 0, 0),           # 03-11 23:59:59.999 EDT
    ("S27", "sales", None, "2018-03-12 04:30", "abandoned", 1_000, 0, 0),                  # 03-12 00:30 EDT
]

# (offer, recipient, queue, ended (UTC), outcome, ring_ms); offered = ended - ring
OFFERS = [
    ("O01", "ann", "sales", "2017-12-30 14:59", "accepted", 4_000),            # 12-30 09:59 (S01)
    ("O02", "bob", "sales", "2017-12-30 15:58", "accepted", 6_000),            # 12-30 10:58 (S02)
    ("O15", "cy", "sales", "2017-12-30 20:58:30", "accepted", 7_000),          # 12-30 15:58:30 (S15)
    ("O14", "ann", "old", "2017-12-31 14:59:52", "accepted", 1_234),           # 12-31 09:59:52 (S14)
    ("O05", "ann", "sales", "2018-01-01 04:29:30", "accepted", 5_000),         # 12-31 23:29:30 (S05)
    ("O07", "bob", "sales", "2018-01-01 04:59", "accepted", 8_000),            # 12-31 23:59 (S07 ends 01-01)
    ("O09", "ann", "support", "2018-01-02 18:59:15", "accepted", 3_000),       # 01-02 13:59:15 (S09)
    ("O11", "bob", "sales", "2018-01-03 04:59:56.999", "accepted", 2_000),     # 01-02 23:59:56.999 (S11)
    ("M1", "ann", "sales", "2017-12-30 14:58", "missed", 20_000),              # 12-30 09:58
    ("M2", "ann", "support", "2018-01-02 18:58", "missed", 20_000),            # 01-02 13:58
    ("M3", "bob", "sales", "2018-01-01 05:00", "missed", 20_000),              # 01-01 00:00
    ("M4", "ann", "sales", "2017-12-30 04:59", "missed", 20_000),              # 12-29 23:59
    ("J1", "bob", "sales", "2018-01-01 04:58", "rejected", 3_000),             # 12-31 23:58
    ("J2", "ann", "old", "2017-12-31 14:59", "rejected", 2_000),               # 12-31 09:59
    ("C1", "ann", "sales", "2017-12-30 14:57", "cancelled", 1_500),            # 12-30 09:57
]

DAYS = ["20171230", "20171231", "20180101", "20180102"]


def series(**metrics: list[float]) -> dict[str, dict[str, float]]:
    """Metric -> {DAYS[i]: value}."""
    return {name: dict(zip(DAYS, values)) for name, values in metrics.items()}


QUEUES_DAILY = {
    "sales": series(
        avg_wait=[12.167, 30.0, 40.0, 3.0],  # (10 + 20 + 6.5) / 3; S05; S07; S11
        call_count=[4, 2, 2, 3],             # S01 S02 S03 S15; S04 S05; S07 S06; S16 S17 S11
        timeout_count=[0, 1, 1, 0],          # S04 timed_out; S06 rejected_full
        abandon_count=[1, 0, 0, 0],          # S03 (S13 is 12-29 local, S12 01-03)
    ),
    "support": series(
        avg_wait=[0, 0, 0, 45.0],
        call_count=[0, 0, 1, 2],             # S08; S09 S10
        timeout_count=[0, 0, 1, 0],          # S08 rejected_empty
        abandon_count=[0, 0, 0, 1],          # S10
    ),
}

RECIPIENTS_DAILY = {
    "ann": series(
        call_count=[1, 2, 0, 1],                 # O01; O14 O05; -; O09
        missed_call_count=[1, 0, 0, 1],          # M1 (M4 is 12-29); M2
        rejected_call_count=[0, 1, 0, 0],        # J2
        avg_call_duration=[60.0, 19.0, 0, 45.0],  # S01; (S14 8 + S05 30) / 2; -; S09
        avg_ring_duration=[4.0, 3.117, 0, 3.0],  # O01; (O14 1.234 + O05 5) / 2; -; O09
    ),
    "bob": series(
        call_count=[1, 1, 0, 1],                 # O02; O07 (answered 12-31 23:59); -; O11
        missed_call_count=[0, 0, 1, 0],          # M3 at 01-01 00:00 exactly
        rejected_call_count=[0, 1, 0, 0],        # J1
        avg_call_duration=[120.0, 0, 120.0, 3.0],  # S02; S07 ended 01-01; S11
        avg_ring_duration=[6.0, 8.0, 0, 2.0],    # O02; O07; -; O11
    ),
}


class Setup:
    """The harness, with the New York account (``key``) holding the records."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.key = ""

    def run(self, body) -> None:
        async def with_client(harness_client: Client) -> None:
            async with self.api.client(self.key) as client:
                await body(client, harness_client)
        self.api.run(with_client)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Setup:
    """Creates the account (America/New_York) with queues sales and support
    and recipients ann and bob (current), and stores the records above;
    "old" and "cy" exist only in the records (deleted)."""
    state = Setup(Api(tmp_path_factory.mktemp("reports") / "data"))

    async def populate(harness_client: Client) -> None:
        api = state.api
        async with api.admin() as admin:
            account = await admin.create_account("New York", time_zone=ZONE)
            state.key = (await admin.create_api_key(account.id, "reports")).secret
        async with api.client(state.key) as client:
            for queue_id in ("sales", "support"):
                await client.create_queue(id=queue_id, name=queue_id.title())
            for recipient_id in ("ann", "bob"):
                await client.create_recipient(id=recipient_id, name=recipient_id.title())
        ops = []
        for session_id, queue_id, recipient_id, ended, reason, wait, ring, talk in SESSIONS:
            ended_ms = utc(ended)
            ops.append(InsertFinishedSession(account.id, session_id, queue_id, recipient_id,
                                             ended_ms - talk - wait, ended_ms, reason, wait, ring, talk,
                                             [queue_id], {}))
        for offer_id, recipient_id, queue_id, ended, outcome, ring in OFFERS:
            ended_ms = utc(ended)
            ops.append(InsertOffer(account.id, offer_id, "S" + offer_id, queue_id, recipient_id,
                                   ended_ms - ring, ended_ms, outcome, ring))
        await api.running.node.storage.write(*ops)

    state.api.run(populate)
    return state


def request(**fields) -> report_pb2.RunReportRequest:
    return report_pb2.RunReportRequest(**fields)


async def run_report(client: Client, **fields) -> report_pb2.RunReportResponse:
    stub = report_pb2_grpc.ReportServiceStub(client.channel)
    return await stub.RunReport(request(**fields), metadata=client.metadata, timeout=10)


def json_map(response: report_pb2.RunReportResponse) -> dict:
    assert not response.csv
    return {report.id: {name: dict(s.points) for name, s in report.data.items()} for report in response.reports}


def csv_map(response: report_pb2.RunReportResponse, metrics: list[str]) -> dict:
    """The CSV parsed into the JSON map's shape, after checking its layout:
    the header, entities by id and keys in time order, CRLF line ends."""
    assert not response.reports
    text = response.csv
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == ["id", "period", *metrics]
    body = rows[1:]
    keys = list(response.period_keys)
    ids = list(dict.fromkeys(row[0] for row in body))
    assert ids == sorted(ids)
    assert [row[:2] for row in body] == [[entity_id, key] for entity_id in ids for key in keys]
    result: dict = {}
    for entity_id, key, *cells in body:
        for name, cell in zip(metrics, cells):
            assert cell == (str(int(float(cell))) if float(cell).is_integer() else cell)  # 3, not 3.0
            result.setdefault(entity_id, {}).setdefault(name, {})[key] = float(cell)
    return result


async def both(client: Client, columns: list[str], **fields) -> tuple[dict, dict, report_pb2.RunReportResponse]:
    """The report as JSON and as CSV (whose metric columns must be
    ``columns``), each as {id: {metric: {key: value}}}."""
    as_json = await run_report(client, **fields, format=R.REPORT_FORMAT_JSON)
    as_csv = await run_report(client, **fields, format=R.REPORT_FORMAT_CSV)
    assert list(as_json.period_keys) == list(as_csv.period_keys)
    assert [r.id for r in as_json.reports] == sorted(r.id for r in as_json.reports)
    return json_map(as_json), csv_map(as_csv, columns), as_json


QUEUE_METRICS = ["avg_wait", "call_count", "timeout_count", "abandon_count"]
RECIPIENT_METRICS = ["call_count", "missed_call_count", "rejected_call_count", "avg_call_duration",
                     "avg_ring_duration"]


def test_daily_queue_report_every_metric_and_key(setup):
    async def body(client, _):
        # Default metrics (all) and identifiers (the account's queues now: not "old").
        as_json, as_csv, response = await both(client, QUEUE_METRICS, report=QUEUES, start_date="2017-12-30",
                                               end_date="2018-01-02")
        assert as_json == as_csv == QUEUES_DAILY
        assert list(response.period_keys) == DAYS
        assert (response.time_zone, response.end_date) == (ZONE, "2018-01-02")
        times = response.execution_times
        assert min(times.load_ms, times.filter_ms, times.render_ms) >= 0
        explicit = await run_report(client, report=QUEUES, start_date="2017-12-30", end_date="2018-01-02",
                                    period=DAILY, metrics=QUEUE_METRICS, identifiers=["support", "sales"])
        assert json_map(explicit) == QUEUES_DAILY

    setup.run(body)


def test_daily_recipient_report_every_metric_and_key(setup):
    async def body(client, _):
        as_json, as_csv, _ = await both(client, RECIPIENT_METRICS, report=RECIPIENTS, start_date="2017-12-30",
                                        end_date="2018-01-02")
        assert as_json == as_csv == RECIPIENTS_DAILY

    setup.run(body)


def test_weekly_across_month_and_year_with_partial_weeks(setup):
    # 2017-12-27 (Wed) .. 2018-01-09 (Tue): 201752 is Wed-Sat only, 201753 is
    # Sunday 12-31 alone, 201800 is 2018's Mon 01-01 .. Sat 01-06, 201801 is
    # Sun 01-07 .. Tue 01-09. S18 (12-26) and S21 (01-10) are outside.
    expected = {"sales": {
        # 201752: S19 S13 S03; 201800: S12; 201801: S20
        "abandon_count": {"201752": 3, "201753": 0, "201800": 1, "201801": 1},
        # 201752: those and S01 S02 S15; 201753: S04 S05; 201800: S06 S07 S11 S16 S17 S12 S22
        "call_count": {"201752": 6, "201753": 2, "201800": 7, "201801": 1},
        # 201753: S04; 201800: S06 S22
        "timeout_count": {"201752": 0, "201753": 1, "201800": 2, "201801": 0},
        # 201752: (S01 10 + S02 20 + S15 6.5) / 3; 201753: S05; 201800: (S07 40 + S11 3) / 2
        "avg_wait": {"201752": 12.167, "201753": 30.0, "201800": 21.5, "201801": 0},
    }}
    metrics = ["abandon_count", "call_count", "timeout_count", "avg_wait"]

    async def body(client, _):
        as_json, as_csv, response = await both(client, metrics, report=QUEUES, start_date="2017-12-27",
                                               end_date="2018-01-09", period=WEEKLY, metrics=metrics,
                                               identifiers=["sales"])
        assert as_json == as_csv == expected
        assert list(response.period_keys) == ["201752", "201753", "201800", "201801"]
        # The whole week of New Year's Eve: 2017-12-31 .. 2018-01-06.
        week = json_map(await run_report(client, report=RECIPIENTS, start_date="2017-12-31",
                                         end_date="2018-01-06", period=WEEKLY, identifiers=["bob"],
                                         metrics=["call_count", "missed_call_count", "avg_call_duration"]))
        assert week == {"bob": {"call_count": {"201753": 1, "201800": 1},       # O07; O11
                                "missed_call_count": {"201753": 0, "201800": 1},  # M3
                                "avg_call_duration": {"201753": 0, "201800": 61.5}}}  # (S07 120 + S11 3) / 2

    setup.run(body)


def test_monthly_with_partial_months(setup):
    expected = {"sales": {
        "call_count": {"201711": 1, "201712": 9, "201801": 9, "201802": 1},
        "avg_wait": {"201711": 4.0, "201712": 16.625, "201801": 21.5, "201802": 0},
    }}
    # 201711: S24 (S23 is 11-14 local); 201712: S18 S19 S13 S01 S02 S03 S15 S04 S05,
    # completed 10 20 6.5 30 -> 16.625; 201801: S07 S06 S16 S17 S11 S12 S22 S20 S21,
    # completed 40 3 -> 21.5; 201802: S25 (S26 is 02-11 local).

    async def body(client, _):
        as_json, as_csv, response = await both(client, ["call_count", "avg_wait"], report=QUEUES,
                                               start_date="2017-11-15", end_date="2018-02-10", period=MONTHLY,
                                               metrics=["call_count", "avg_wait"], identifiers=["sales"])
        assert as_json == as_csv == expected
        assert response.end_date == "2018-02-10"

    setup.run(body)


def test_days_follow_the_daylight_saving_change(setup):
    # 2018-03-11 is 23 hours long in New York: midnights at 05:00, 05:00,
    # 04:00 and 04:00 UTC.
    async def body(client, _):
        as_json, as_csv, _ = await both(client, ["call_count"], report=QUEUES, start_date="2018-03-10",
                                        end_date="2018-03-12", metrics=["call_count"], identifiers=["sales"])
        assert as_json == as_csv == {"sales": {"call_count": {"20180310": 1, "20180311": 1, "20180312": 1}}}

    setup.run(body)


def test_identifiers_may_name_deleted_entities_and_queue_ids_filter_calls(setup):
    async def body(client, _):
        queues = json_map(await run_report(client, report=QUEUES, start_date="2017-12-31",
                                           end_date="2017-12-31", identifiers=["sales", "old"]))
        assert queues == {
            "old": {"avg_wait": {"20171231": 8.0}, "call_count": {"20171231": 1},
                    "timeout_count": {"20171231": 0}, "abandon_count": {"20171231": 0}},
            "sales": {"avg_wait": {"20171231": 30.0}, "call_count": {"20171231": 2},
                      "timeout_count": {"20171231": 1}, "abandon_count": {"20171231": 0}},
        }
        as_json, as_csv, _ = await both(client, RECIPIENT_METRICS, report=RECIPIENTS, start_date="2017-12-30",
                                        end_date="2018-01-02", identifiers=["ann", "cy"], queue_ids=["support"])
        assert as_json == as_csv == {
            "ann": series(call_count=[0, 0, 0, 1], missed_call_count=[0, 0, 0, 1],       # O09; M2
                          rejected_call_count=[0, 0, 0, 0], avg_call_duration=[0, 0, 0, 45.0],
                          avg_ring_duration=[0, 0, 0, 3.0]),
            "cy": series(call_count=[0] * 4, missed_call_count=[0] * 4, rejected_call_count=[0] * 4,
                         avg_call_duration=[0] * 4, avg_ring_duration=[0] * 4),
        }
        # A deleted queue in queue_ids, a deleted recipient in identifiers.
        old = json_map(await run_report(client, report=RECIPIENTS, start_date="2017-12-30",
                                        end_date="2018-01-02", identifiers=["cy", "ann"],
                                        queue_ids=["old", "sales"]))
        assert old == {
            "ann": series(call_count=[1, 2, 0, 0], missed_call_count=[1, 0, 0, 0],     # O01; O14 O05; M1
                          rejected_call_count=[0, 1, 0, 0], avg_call_duration=[60.0, 19.0, 0, 0],
                          avg_ring_duration=[4.0, 3.117, 0, 0]),
            "cy": series(call_count=[1, 0, 0, 0], missed_call_count=[0] * 4, rejected_call_count=[0] * 4,
                         avg_call_duration=[90.0, 0, 0, 0], avg_ring_duration=[7.0, 0, 0, 0]),  # O15, S15
        }

    setup.run(body)


def test_end_date_defaults_to_today_in_the_account_zone(setup):
    def today():
        return datetime.now(ZoneInfo(ZONE)).date()

    async def body(client, _):
        before = today()
        response = await run_report(client, report=QUEUES, start_date=(before - timedelta(days=2)).isoformat(),
                                    metrics=["call_count"])
        after = today()
        assert response.end_date in (before.isoformat(), after.isoformat())
        if before == after:
            assert list(response.period_keys) == [
                (before - timedelta(days=n)).strftime("%Y%m%d") for n in (2, 1, 0)]
            assert json_map(response) == {queue_id: {"call_count": dict.fromkeys(response.period_keys, 0.0)}
                                          for queue_id in ("sales", "support")}

    setup.run(body)


def test_another_account_sees_none_of_these_records(setup):
    async def body(_, harness_client):  # the harness's own account (UTC, no queues)
        response = await run_report(harness_client, report=QUEUES, start_date="2017-12-30",
                                    end_date="2018-01-02")
        assert list(response.reports) == [] and response.time_zone == "UTC"
        as_csv = await run_report(harness_client, report=RECIPIENTS, start_date="2017-12-30",
                                  end_date="2018-01-02", format=R.REPORT_FORMAT_CSV)
        assert as_csv.csv == "id,period," + ",".join(RECIPIENT_METRICS) + "\r\n"
        error = await fails(run_report(harness_client, report=QUEUES, start_date="2017-12-30",
                                       end_date="2018-01-02", identifiers=["sales"]), grpc.StatusCode.NOT_FOUND)
        assert "sales" in error.message

    setup.run(body)


BAD_REQUESTS = [
    (dict(start_date="2018-01-01"), ["report"]),
    (dict(report=7, start_date="2018-01-01"), ["report"]),
    (dict(report=QUEUES), ["start_date"]),
    (dict(report=QUEUES, start_date="2018-1-1"), ["start_date"]),
    (dict(report=QUEUES, start_date="20180101"), ["start_date"]),
    (dict(report=QUEUES, start_date="2018-02-30"), ["start_date"]),
    (dict(report=QUEUES, start_date="2018-01-01", end_date="2018-13-01"), ["end_date"]),
    (dict(report=QUEUES, start_date="2018-01-02", end_date="2018-01-01"), ["end_date"]),
    (dict(report=QUEUES, start_date="2000-01-01", end_date="2018-01-01"), ["end_date"]),
    (dict(report=QUEUES, start_date="2018-01-01", period=9), ["period"]),
    (dict(report=QUEUES, start_date="2018-01-01", format=9), ["format"]),
    (dict(report=QUEUES, start_date="2018-01-01", metrics=["call_count", "calls"]), ["metrics[1]"]),
    (dict(report=QUEUES, start_date="2018-01-01", metrics=["missed_call_count"]), ["metrics[0]"]),
    (dict(report=RECIPIENTS, start_date="2018-01-01", metrics=["avg_wait"]), ["metrics[0]"]),
    (dict(report=QUEUES, start_date="2018-01-01", queue_ids=["sales"]), ["queue_ids"]),
    (dict(report=QUEUES, start_date="2018-01-01", identifiers=["sales", ""]), ["identifiers[1]"]),
    (dict(report=RECIPIENTS, start_date="x", end_date="y", metrics=["z"], queue_ids=[""]),
     ["start_date", "end_date", "metrics[0]", "queue_ids[0]"]),
    # 200 queues x 3652 days is over 500,000 values per metric
    (dict(report=QUEUES, start_date="2010-01-01", end_date="2019-12-31", identifiers=[f"q{n}" for n in range(200)]),
     ["period"]),
]


def test_bad_requests_are_invalid_argument_naming_the_field(setup):
    async def body(client, _):
        for fields, names in BAD_REQUESTS:
            error = await fails(run_report(client, **fields), grpc.StatusCode.INVALID_ARGUMENT)
            assert error.fields == names, (fields, error)
        for fields in (dict(report=QUEUES, identifiers=["nope"]),
                       dict(report=RECIPIENTS, identifiers=["nobody"]),
                       dict(report=RECIPIENTS, queue_ids=["nope"])):
            error = await fails(run_report(client, start_date="2018-01-01", end_date="2018-01-31", **fields),
                                grpc.StatusCode.NOT_FOUND)
            assert "not found" in error.message

    setup.run(body)
