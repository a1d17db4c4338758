"""ReportService: proto <-> ``qroute.reports``."""

from __future__ import annotations

import asyncio
import time
import zoneinfo

from qroute import reports
from qroute.api.common import Servicer, unary
from qroute.errors import InvalidArgument
from qroute.reports.periods import today
from qroute.v1 import report_pb2, report_pb2_grpc

# Reports running at once on a node; more wait their turn. Each holds a
# thread and a database connection, and a big one a core for a second.
MAX_CONCURRENT_REPORTS = 2

_KINDS = {
    report_pb2.REPORT_KIND_QUEUES: reports.Kind.QUEUES,
    report_pb2.REPORT_KIND_RECIPIENTS: reports.Kind.RECIPIENTS,
}
_PERIODS = {
    report_pb2.REPORT_PERIOD_UNSPECIFIED: reports.Period.DAILY,
    report_pb2.REPORT_PERIOD_DAILY: reports.Period.DAILY,
    report_pb2.REPORT_PERIOD_WEEKLY: reports.Period.WEEKLY,
    report_pb2.REPORT_PERIOD_MONTHLY: reports.Period.MONTHLY,
}
_FORMATS = {report_pb2.REPORT_FORMAT_UNSPECIFIED, report_pb2.REPORT_FORMAT_JSON, report_pb2.REPORT_FORMAT_CSV}


def _enum_problems(request: report_pb2.RunReportRequest) -> list[tuple[str, str]]:
    problems = []
    if request.report == report_pb2.REPORT_KIND_UNSPECIFIED:
        problems.append(("report", "required: REPORT_KIND_QUEUES or REPORT_KIND_RECIPIENTS"))
    elif request.report not in _KINDS:
        problems.append(("report", f"unknown report kind {request.report}"))
    if request.period not in _PERIODS:
        problems.append(("period", f"unknown period {request.period}"))
    if request.format not in _FORMATS:
        problems.append(("format", f"unknown format {request.format}"))
    return problems


def _response(report: reports.Report, output_format: int) -> report_pb2.RunReportResponse:
    """The response message of ``report`` in ``output_format`` (blocking)."""
    started = time.perf_counter()
    response = report_pb2.RunReportResponse(time_zone=report.time_zone, period_keys=report.keys,
                                            end_date=report.last_day.isoformat())
    if output_format == report_pb2.REPORT_FORMAT_CSV:
        response.csv = reports.render_csv(report)
    else:
        keys = report.keys
        for entity_id, metrics in report.values.items():
            entity = response.reports.add(id=entity_id)
            for name, series in metrics.items():
                entity.data[name].points.update(zip(keys, series))
    times = response.execution_times
    times.load_ms = round(report.load_ms)
    times.filter_ms = round(report.filter_ms)
    times.render_ms = round((time.perf_counter() - started) * 1000)
    return response


class ReportServicer(Servicer, report_pb2_grpc.ReportServiceServicer):
    def __init__(self, node) -> None:
        super().__init__(node)
        self._running = asyncio.Semaphore(MAX_CONCURRENT_REPORTS)

    @unary
    async def RunReport(self, request, context, principal):
        floor = self.floor(principal)
        account = self.node.account(principal.account_id)
        problems = _enum_problems(request)
        kind = _KINDS.get(request.report, reports.Kind.QUEUES)
        try:
            spec = reports.spec(kind, request.start_date, request.end_date, _PERIODS.get(request.period),
                                request.metrics, request.identifiers, request.queue_ids,
                                today=today(zoneinfo.ZoneInfo(account.time_zone), self.node.clock.now_ms()))
        except InvalidArgument as exc:
            problems.extend(exc.violations)
        if problems:
            raise InvalidArgument(*problems)
        current = floor.queues if kind is reports.Kind.QUEUES else floor.recipients
        async with self._running:
            report = await reports.run_report(str(self.node.storage.path), principal.account_id,
                                              account.time_zone, spec, current, floor.queues)
            # Off the event loop too: rendering a big report takes a while.
            return await asyncio.to_thread(_response, report, request.format)
