"""SessionService, with ``EnqueueStream`` for gateways that enqueue fast."""

from __future__ import annotations

import asyncio
import contextlib
import functools

from qroute.api import convert
from qroute.api.common import Servicer, answer_of, mutation, observed, unary
from qroute.api.errors import abort
from qroute.domain.enums import SessionState
from qroute.errors import InvalidArgument
from qroute.events.journal import shielded
from qroute.v1 import session_pb2, session_pb2_grpc

_END = object()
PIPELINE = 256  # enqueues of one stream awaiting their commit at once
# The RPC a request_id is remembered under: an enqueue sent on a stream and retried by Enqueue is one call.
ENQUEUE = "SessionService/Enqueue"


class SessionServicer(Servicer, session_pb2_grpc.SessionServiceServicer):
    def _enqueue(self, floor, request):
        caller = request.caller
        session = floor.enqueue(request.queue_id, caller_number=caller.number, caller_name=caller.name,
                                priority=request.priority, skills=request.skills,  # copied by the floor
                                properties=convert.plain(request.properties))
        return convert.session_message(floor, session, floor.clock.now_ms())

    @mutation
    async def Enqueue(self, request, context, principal):
        return self._enqueue(self.floor(principal), request)

    @observed
    async def EnqueueStream(self, request_iterator, context):
        """Answers in request order, each once durable; many share a commit.
        A bad request ends the stream with its status (earlier ones stand).
        A ``request_id`` answered before (here or by ``Enqueue``) gets that
        answer again."""
        try:
            principal = self.principal(context)
            floor = self.floor(principal)
        except Exception as exc:
            await abort(context, exc)
            return
        pending: asyncio.Queue = asyncio.Queue(PIPELINE)
        journal = self.node.journal

        async def read() -> None:
            try:
                async for request in request_iterator:
                    if request.request_id:  # a retried enqueue gets its first answer, as with Enqueue
                        reply = await answer_of(self.node, principal, ENQUEUE, request.request_id,
                                                functools.partial(self._enqueue, floor, request))
                    else:
                        reply = self._enqueue(floor, request)
                    await pending.put((reply, journal.commit_point(answers=1)))
            except Exception as exc:
                await pending.put((exc, None))
            finally:
                await pending.put((_END, None))

        reader = asyncio.get_running_loop().create_task(read())
        try:
            while True:
                reply, committed = await pending.get()
                if reply is _END:
                    break
                if isinstance(reply, Exception):
                    await journal.durable()
                    await abort(context, reply)
                if committed is not None:
                    await shielded(committed)
                yield reply
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    @mutation
    async def Abandon(self, request, context, principal):
        floor = self.floor(principal)
        return convert.session_message(floor, floor.abandon(request.session_id), floor.clock.now_ms())

    @mutation
    async def Hangup(self, request, context, principal):
        floor = self.floor(principal)
        return convert.session_message(floor, floor.hangup(request.session_id), floor.clock.now_ms())

    @mutation
    async def Transfer(self, request, context, principal):
        floor = self.floor(principal)
        session = floor.transfer(request.session_id, request.queue_id)
        return convert.session_message(floor, session, floor.clock.now_ms())

    @unary
    async def GetSession(self, request, context, principal):
        floor = self.floor(principal)
        return convert.session_message(floor, floor.session(request.session_id), floor.clock.now_ms())

    @unary
    async def ListSessions(self, request, context, principal):
        """Waiting sessions in the order they will be served, then the others."""
        floor = self.floor(principal)
        states = {SessionState(s) for s in request.states if s in set(SessionState)}
        if len(states) != len(set(request.states)):
            raise InvalidArgument.field("states", "holds an unknown state")
        queue_ids = [request.queue_id] if request.queue_id else sorted(floor.queues)
        for queue_id in queue_ids:
            floor.queue(queue_id)
        chosen = []
        if not states or SessionState.WAITING in states:
            for queue_id in queue_ids:
                chosen.extend(floor.waiting_sessions(queue_id))
        wanted = set(queue_ids)
        # no states named: the live ones (ENDED only when asked for)
        others = states or {SessionState.OFFERING, SessionState.CONNECTED}
        candidates = list(floor.sessions.values())
        if SessionState.ENDED in others:
            candidates.extend(floor.ended.values())
        chosen.extend(sorted(
            (s for s in candidates if s.queue_id in wanted and s.state != SessionState.WAITING and s.state in others),
            key=lambda s: (s.state, s.entered_at_ms, s.seq)))
        start = _offset(request.page_token)
        size = min(request.page_size or 100, 1000)
        window = chosen[start:start + size]
        token = str(start + size) if start + size < len(chosen) else ""
        now = floor.clock.now_ms()
        return session_pb2.ListSessionsResponse(
            sessions=[convert.session_message(floor, s, now) for s in window], next_page_token=token)


def _offset(token: str) -> int:
    if not token:
        return 0
    if not token.isdigit():
        raise InvalidArgument.field("page_token", "is not a token this server gave")
    return int(token)
