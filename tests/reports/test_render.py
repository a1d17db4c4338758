"""Rendering a report: the JSON map and the CSV text (no server)."""

from __future__ import annotations

import csv
import io
from datetime import date

from qroute.reports import Kind, Period, Report, render_csv


def _report() -> Report:
    return Report(Kind.RECIPIENTS, Period.MONTHLY, "UTC", date(2018, 1, 1), date(2018, 2, 28),
                  keys=["201801", "201802"], metrics=["call_count", "avg_call_duration"],
                  values={
                      'a "quoted", id': {"call_count": [3.0, 0.0], "avg_call_duration": [12.5, 0.0]},
                      "b": {"call_count": [1.0, 2.0], "avg_call_duration": [0.001, 1234567.125]},
                  })


def test_the_json_map_is_entity_metric_key_value():
    assert _report().as_map() == {
        'a "quoted", id': {"call_count": {"201801": 3.0, "201802": 0.0},
                           "avg_call_duration": {"201801": 12.5, "201802": 0.0}},
        "b": {"call_count": {"201801": 1.0, "201802": 2.0},
              "avg_call_duration": {"201801": 0.001, "201802": 1234567.125}},
    }


def test_csv_has_a_header_then_a_row_per_entity_and_key_with_plain_numbers():
    text = render_csv(_report())
    assert text == (
        "id,period,call_count,avg_call_duration\r\n"
        '"a ""quoted"", id",201801,3,12.5\r\n'
        '"a ""quoted"", id",201802,0,0\r\n'
        "b,201801,1,0.001\r\n"
        "b,201802,2,1234567.125\r\n"
    )
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[1][0] == 'a "quoted", id'
