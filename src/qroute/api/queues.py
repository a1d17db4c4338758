"""QueueService."""

from __future__ import annotations

import asyncio

import grpc
from google.protobuf import empty_pb2

from qroute.api import convert
from qroute.api.common import Servicer, mutation, request_fields, stream, unary
from qroute.api.pages import page
from qroute.domain.enums import Availability
from qroute.domain.events import Entity
from qroute.errors import InvalidArgument
from qroute.v1 import queue_pb2, queue_pb2_grpc

MIN_WATCH_MS = 100
DEFAULT_WATCH_MS = 1000


def _member_states(floor, queue_id: str) -> list[queue_pb2.MemberState]:
    """A queue's members with their live state: what a wallboard loads in one
    call instead of one GetRecipientStatus per recipient."""
    states = []
    for recipient_id in floor.queues[queue_id].members:
        recipient = floor.recipients[recipient_id]
        states.append(queue_pb2.MemberState(
            recipient_id=recipient_id, state=int(recipient.state),
            state_since=convert.timestamp(recipient.state_since_ms),
            availability=int(Availability.AWAY if queue_id in recipient.away_queues else Availability.READY)))
    return states


class QueueServicer(Servicer, queue_pb2_grpc.QueueServiceServicer):
    @mutation
    async def CreateQueue(self, request, context, principal):
        with request_fields("queue"):
            queue = self.floor(principal).create_queue(convert.queue_config(request.queue))
        return convert.queue_message(queue.config)

    @unary
    async def GetQueue(self, request, context, principal):
        return convert.queue_message(self.floor(principal).queue(request.queue_id).config)

    @mutation
    async def UpdateQueue(self, request, context, principal):
        floor = self.floor(principal)
        with request_fields("queue"):
            changes = convert.queue_changes(request.queue, request.update_mask)
            queue = floor.update_queue(request.queue.id, changes)
        return convert.queue_message(queue.config)

    @mutation
    async def DeleteQueue(self, request, context, principal):
        self.floor(principal).delete_queue(request.queue_id, force=request.force)
        return empty_pb2.Empty()

    @unary
    async def ListQueues(self, request, context, principal):
        queues, token = page(list(self.floor(principal).queues), request.page_size, request.page_token)
        floor = self.floor(principal)
        return queue_pb2.ListQueuesResponse(
            queues=[convert.queue_message(floor.queues[q].config) for q in queues], next_page_token=token)

    def _status(self, floor, queue_id):
        return convert.queue_status_message(floor.queue_status(queue_id), self.node.name, floor.clock.now_ms())

    @unary
    async def GetQueueStatus(self, request, context, principal):
        return self._status(self.floor(principal), request.queue_id)

    @unary
    async def BatchGetQueueStatus(self, request, context, principal):
        floor = self.floor(principal)
        queue_ids = list(request.queue_ids) or sorted(floor.queues)  # none named: every queue
        for queue_id in queue_ids:
            floor.queue(queue_id)
        response = queue_pb2.BatchGetQueueStatusResponse(
            statuses={queue_id: self._status(floor, queue_id) for queue_id in queue_ids})
        if request.include_members:
            for queue_id, status in response.statuses.items():
                status.members.extend(_member_states(floor, queue_id))
        return response

    @stream
    async def WatchQueueStatus(self, request, context, principal):
        """Each queue's status at once; then a queue's status again as soon
        as an event touches it and the status changed, at most once per
        interval per queue; and each interval for what time alone changes
        (waits, estimates). Woken by the account's event stream: no polling
        between intervals, nothing per event but a look at what it touches."""
        floor = self.floor(principal)
        interval = request.interval_ms or DEFAULT_WATCH_MS
        if interval < MIN_WATCH_MS:
            raise InvalidArgument.field("interval_ms", f"must be >= {MIN_WATCH_MS} (or 0 for {DEFAULT_WATCH_MS})")
        named = set(request.queue_ids)  # none named: every queue, new ones too
        for queue_id in named:
            floor.queue(queue_id)
        events = self.node.events.stream(floor.account_id)
        loop = asyncio.get_running_loop()
        period = interval / 1000
        cursor = events.next_sequence
        last: dict[str, queue_pb2.QueueStatus] = {}  # the last status sent, without its time
        sent_at: dict[str, float] = {}
        dirty: set[str] = set(named or floor.queues)  # queues whose status may have changed
        next_sweep = loop.time() + period
        while True:
            now = loop.time()
            if now >= next_sweep:
                dirty.update(named or floor.queues)
                next_sweep = now + period
            wake = next_sweep
            for queue_id in sorted(dirty):
                if queue_id not in floor.queues:  # deleted (or not created yet)
                    dirty.discard(queue_id)
                    last.pop(queue_id, None)
                    continue
                due = sent_at.get(queue_id, -period) + period
                if now < due:
                    wake = min(wake, due)
                    continue
                dirty.discard(queue_id)
                status = self._status(floor, queue_id)
                compare = queue_pb2.QueueStatus()
                compare.CopyFrom(status)
                compare.ClearField("time")
                if last.get(queue_id) != compare:
                    last[queue_id] = compare
                    sent_at[queue_id] = now
                    yield status
            await events.wait(cursor, max(0.0, wake - loop.time()))
            if events.closed:
                try:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "server shutting down")
                except grpc.aio.AbortError:
                    raise
                except Exception:  # the server stopped the call first
                    return
            if cursor < events.base:  # more events than the buffer holds went by
                dirty.update(named or floor.queues)
                cursor = events.base
            end = events.next_sequence
            for key in events.keys(cursor, end):
                touched = key.queue_ids
                if key.entity == Entity.RECIPIENT:  # its state counts in each of its queues
                    recipient = floor.recipients.get(key.recipient_id)
                    if recipient is not None:
                        touched = (*touched, *recipient.queues)
                dirty.update(q for q in touched if not named or q in named)
            cursor = end

    @mutation
    async def AddMembers(self, request, context, principal):
        added = self.floor(principal).add_members(request.queue_id, convert.members(request.members))
        return queue_pb2.AddMembersResponse(members=[convert.member_message(m) for m in added])

    @mutation
    async def RemoveMembers(self, request, context, principal):
        removed = self.floor(principal).remove_members(request.queue_id, request.recipient_ids)
        return queue_pb2.RemoveMembersResponse(recipient_ids=removed)

    @unary
    async def ListMembers(self, request, context, principal):
        queue = self.floor(principal).queue(request.queue_id)
        return queue_pb2.ListMembersResponse(members=[convert.member_message(m) for m in queue.members.values()])
