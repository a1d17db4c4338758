"""CallbackService: virtual queueing (seed 003, virtualQ's caller API) over
``qroute.engine.callbacks``. A line is a queue; ``line_id`` a queue id."""

from __future__ import annotations

from qroute.api import convert
from qroute.api.common import Servicer, mutation, unary
from qroute.engine.callbacks import CallerState, LinedUpCaller
from qroute.v1 import callback_pb2, callback_pb2_grpc


def caller_message(caller: LinedUpCaller, ahead_and_ewt: tuple[int, int] | None, now_ms: int
                   ) -> callback_pb2.CallbackCaller:
    """``ahead_and_ewt``: the caller's place while it waits (``Callbacks.place``).
    ``ewt`` is qroute's estimate while the caller waits (-1: nobody serves
    the line), else the call center's last reported one."""
    waiting = caller.state in (CallerState.WAITING, CallerState.NOTIFIED)
    estimate_ms = ahead_and_ewt[1] if waiting and ahead_and_ewt is not None else None
    if estimate_ms is None:
        ewt = caller.reported_ewt or 0
    else:
        ewt = -1 if estimate_ms < 0 else round(estimate_ms / 1000)
    until_ms = caller.connected_at_ms or caller.ended_at_ms or now_ms
    return callback_pb2.CallbackCaller(
        id=caller.id, line_id=caller.line_id, phone=caller.phone, channel=int(caller.channel),
        source=caller.source, ewt=ewt, connected_at=convert.timestamp(caller.connected_at_ms),
        created_at=convert.timestamp(caller.created_at_ms),
        estimated_up_time_at=convert.timestamp(now_ms + estimate_ms)
        if estimate_ms is not None and estimate_ms >= 0 else None,
        notified_at=convert.timestamp(caller.notified_at_ms), updated_at=convert.timestamp(caller.updated_at_ms),
        properties=convert.struct(caller.properties), skills=caller.skills, state=int(caller.state),
        wait_time=max(0, until_ms - caller.created_at_ms) // 1000, lang=caller.lang, session_id=caller.session_id,
        service_state=int(caller.service_state or 0), agent_id=caller.agent_id)


def _optional(request, field: str) -> int | None:
    return getattr(request, field) if request.HasField(field) else None


class CallbackServicer(Servicer, callback_pb2_grpc.CallbackServiceServicer):
    def callbacks(self, principal):
        return self.node.callbacks_of(principal.require_account())

    def _message(self, lined_up, caller: LinedUpCaller) -> callback_pb2.CallbackCaller:
        return caller_message(caller, lined_up.place(caller), lined_up.floor.clock.now_ms())

    @mutation
    async def LineUpCaller(self, request, context, principal):
        lined_up = self.callbacks(principal)
        caller = lined_up.line_up(request.line_id, request.phone, request.channel, request.source,
                                  lang=request.lang, skills=request.skills,
                                  properties=convert.plain(request.properties))
        return self._message(lined_up, caller)

    @unary
    async def VerifyCaller(self, request, context, principal):
        lined_up = self.callbacks(principal)
        up, caller = lined_up.verify(request.line_id, request.phone)
        return callback_pb2.VerifyCallerResponse(
            up=up, caller=self._message(lined_up, caller) if caller is not None else None)

    @unary
    async def GetCaller(self, request, context, principal):
        lined_up = self.callbacks(principal)
        return self._message(lined_up, lined_up.get(request.line_id, request.phone))

    @mutation
    async def NotifyCallerConnected(self, request, context, principal):
        lined_up = self.callbacks(principal)
        return self._message(lined_up, lined_up.connect(request.line_id, request.phone))

    @mutation
    async def NotifyCallerTransferred(self, request, context, principal):
        lined_up = self.callbacks(principal)
        caller = lined_up.transferred(request.line_id, request.phone,
                                      wait_time_when_up=_optional(request, "wait_time_when_up"),
                                      agent_id=request.agent_id)
        return self._message(lined_up, caller)

    @mutation
    async def UpdateCallerInformation(self, request, context, principal):
        lined_up = self.callbacks(principal)
        caller = lined_up.update(
            request.line_id, request.phone, skills=request.skills,
            properties=convert.plain(request.properties) if request.HasField("properties") else None,
            ewt=_optional(request, "ewt"), service_state=request.service_state,
            wait_time_when_up=_optional(request, "wait_time_when_up"), talk_time=_optional(request, "talk_time"),
            agent_id=request.agent_id)
        return self._message(lined_up, caller)

    @unary
    async def ListCallersWaiting(self, request, context, principal):
        lined_up = self.callbacks(principal)
        now = lined_up.floor.clock.now_ms()
        return callback_pb2.ListCallersWaitingResponse(callers=[
            caller_message(caller, (ahead, estimate), now)
            for caller, ahead, estimate in lined_up.waiting(request.line_id)])
