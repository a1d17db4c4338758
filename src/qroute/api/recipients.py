"""RecipientService, with ``Connect``: the agent desktop's stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc
from google.protobuf import empty_pb2

from qroute.api import convert, desktops, feature_codes
from qroute.api.common import Servicer, mutation, observed, request_fields, unary
from qroute.api.errors import abort
from qroute.api.pages import page
from qroute.api.settings import save_supervision
from qroute.domain.settings import split_name
from qroute.domain.enums import Availability, EventSource
from qroute.errors import InvalidArgument, PermissionDenied
from qroute.v1 import recipient_pb2, recipient_pb2_grpc

log = logging.getLogger("qroute.api.agent")


SEARCH_FIELDS = {recipient_pb2.SEARCH_FIELD_LAST_NAME: "last_name", recipient_pb2.SEARCH_FIELD_FIRST_NAME: "first_name",
                 recipient_pb2.SEARCH_FIELD_USER_ID: "user_id", recipient_pb2.SEARCH_FIELD_EXTENSION: "extension",
                 recipient_pb2.SEARCH_FIELD_DN: "dn"}
SEARCH_MODES = {recipient_pb2.SEARCH_MODE_STARTS: "starts", recipient_pb2.SEARCH_MODE_CONTAINS: "contains",
                recipient_pb2.SEARCH_MODE_EQUALS: "equals"}


def source(value: int) -> EventSource:
    return EventSource(value) if value in (EventSource.API, EventSource.PHONE) else EventSource.API


def acting_for(floor, principal, recipient_id: str, supervisor_may: bool = True) -> str:
    """Who changes ``recipient_id`` for ``principal``: ``""`` for an
    account-wide key or the recipient's own key, the supervisor's id for a
    key of a supervisor of it (the change's ``changed_by``); PermissionDenied
    for any other recipient key, or for a supervisor when not ``supervisor_may``."""
    own = principal.recipient_id
    if not own or own == recipient_id:
        return ""
    if not supervisor_may:
        raise PermissionDenied(f"this API key acts for recipient {own}; only {recipient_id}'s own key or an "
                               "account-wide key may do this for it")
    floor.check_supervises(own, recipient_id)
    return own


ACTIONS = {recipient_pb2.RECIPIENT_ACTION_LOGIN, recipient_pb2.RECIPIENT_ACTION_LOGOUT,
           recipient_pb2.RECIPIENT_ACTION_READY, recipient_pb2.RECIPIENT_ACTION_AWAY,
           recipient_pb2.RECIPIENT_ACTION_LOGIN_READY, recipient_pb2.RECIPIENT_ACTION_TOGGLE}


class RecipientServicer(Servicer, recipient_pb2_grpc.RecipientServiceServicer):
    def __init__(self, node) -> None:
        super().__init__(node)
        self._desktops = desktops.Desktops()
        self.pin_throttle = feature_codes.PinThrottle(node.clock)

    @mutation
    async def CreateRecipient(self, request, context, principal):
        with request_fields("recipient"):
            recipient = self.floor(principal).create_recipient(convert.recipient_config(request.recipient))
        return convert.recipient_message(recipient.config)

    @unary
    async def GetRecipient(self, request, context, principal):
        floor = self.floor(principal)
        acting_for(floor, principal, request.recipient_id)
        return convert.recipient_message(floor.recipient(request.recipient_id).config)

    @mutation
    async def UpdateRecipient(self, request, context, principal):
        with request_fields("recipient"):
            changes = convert.recipient_changes(request.recipient, request.update_mask)
            recipient = self.floor(principal).update_recipient(request.recipient.id, changes)
        return convert.recipient_message(recipient.config)

    @mutation
    async def DeleteRecipient(self, request, context, principal):
        self.floor(principal).delete_recipient(request.recipient_id)
        return empty_pb2.Empty()

    @unary
    async def ListRecipients(self, request, context, principal):
        floor = self.floor(principal)
        ids, token = page(list(floor.recipients), request.page_size, request.page_token)
        return recipient_pb2.ListRecipientsResponse(
            recipients=[convert.recipient_message(floor.recipients[r].config) for r in ids], next_page_token=token)

    def _status(self, floor, recipient_id):
        return desktops.status(floor, recipient_id)

    @mutation
    async def Login(self, request, context, principal):
        floor = self.floor(principal)
        acting_for(floor, principal, request.recipient_id, supervisor_may=False)
        floor.login(request.recipient_id, ready=request.ready, source=source(request.source))
        return self._status(floor, request.recipient_id)

    @mutation
    async def Logout(self, request, context, principal):
        floor = self.floor(principal)
        changed_by = acting_for(floor, principal, request.recipient_id)
        floor.logout(request.recipient_id, source=source(request.source), changed_by=changed_by)
        return self._status(floor, request.recipient_id)

    @mutation
    async def SetAvailability(self, request, context, principal):
        floor = self.floor(principal)
        changed_by = acting_for(floor, principal, request.recipient_id)
        floor.set_availability(request.recipient_id, convert.availability(request.availability),
                               queue_id=request.queue_id, unavailable_code=request.unavailable_code,
                               source=source(request.source), changed_by=changed_by)
        return self._status(floor, request.recipient_id)

    @unary
    async def GetRecipientStatus(self, request, context, principal):
        floor = self.floor(principal)
        acting_for(floor, principal, request.recipient_id)
        return self._status(floor, request.recipient_id)

    @mutation
    async def AcceptOffer(self, request, context, principal):
        floor = self.floor(principal)
        session = floor.accept(request.offer_id, principal.recipient_id)
        return convert.session_message(floor, session, floor.clock.now_ms())

    @mutation
    async def RejectOffer(self, request, context, principal):
        floor = self.floor(principal)
        session = floor.reject(request.offer_id, principal.recipient_id)
        return convert.session_message(floor, session, floor.clock.now_ms())

    # ------------------------------------------- seed 000: callflow feature codes

    @mutation
    async def ExecuteAction(self, request, context, principal):
        floor = self.floor(principal)
        self._check_action_request(floor, request)
        acted_by = EventSource(request.source) if request.source else EventSource.PHONE

        def failed(failure: int, recipient_id: str = "") -> recipient_pb2.ExecuteActionResponse:
            return recipient_pb2.ExecuteActionResponse(
                ok=False, recipient_id=recipient_id, media_id=request.failure_media, failure=failure,
                status=self._status(floor, recipient_id) if recipient_id else None)

        by_pin = request.link_method == recipient_pb2.LINK_METHOD_PIN
        if by_pin and self.pin_throttle.blocked(floor.account_id, request.caller_number):
            return failed(recipient_pb2.ACTION_FAILURE_THROTTLED)
        recipients = floor.recipients.values()
        linked = (feature_codes.by_pin(recipients, request.pin) if by_pin
                  else feature_codes.by_caller_id(recipients, request.caller_number))
        if not linked:
            if by_pin:
                self.pin_throttle.wrong(floor.account_id, request.caller_number)
            return failed(recipient_pb2.ACTION_FAILURE_NOT_LINKED)
        if len(linked) > 1:
            return failed(recipient_pb2.ACTION_FAILURE_AMBIGUOUS)
        recipient_id = linked[0]
        if by_pin:
            self.pin_throttle.right(floor.account_id, request.caller_number)
        recipient = floor.recipients[recipient_id]
        # "logged in" for TOGGLE: a logout waiting for a call to end has already been asked for
        logged_in = recipient.logged_in and recipient.logout_pending is None
        action = request.action
        if action == recipient_pb2.RECIPIENT_ACTION_TOGGLE:
            action = (recipient_pb2.RECIPIENT_ACTION_LOGOUT if logged_in
                      else recipient_pb2.RECIPIENT_ACTION_LOGIN_READY)
        if action in (recipient_pb2.RECIPIENT_ACTION_READY, recipient_pb2.RECIPIENT_ACTION_AWAY):
            if not recipient.logged_in:
                return failed(recipient_pb2.ACTION_FAILURE_LOGGED_OUT, recipient_id)
            if request.target_queue and request.target_queue not in recipient.queues:
                return failed(recipient_pb2.ACTION_FAILURE_NOT_MEMBER, recipient_id)
            ready = Availability.READY if action == recipient_pb2.RECIPIENT_ACTION_READY else Availability.AWAY
            floor.set_availability(recipient_id, ready, queue_id=request.target_queue, source=acted_by)
        elif action == recipient_pb2.RECIPIENT_ACTION_LOGOUT:
            floor.logout(recipient_id, source=acted_by)
        elif action == recipient_pb2.RECIPIENT_ACTION_LOGIN:
            floor.login(recipient_id, source=acted_by)
        elif recipient.logged_in:  # LOGIN_READY when in already: ready (and staying, if it was leaving)
            floor.login(recipient_id, source=acted_by)
            if recipient.availability != Availability.READY:
                floor.set_availability(recipient_id, Availability.READY, source=acted_by)
        else:
            floor.login(recipient_id, ready=True, source=acted_by)
        return recipient_pb2.ExecuteActionResponse(ok=True, recipient_id=recipient_id,
                                                   media_id=request.success_media,
                                                   status=self._status(floor, recipient_id))

    @staticmethod
    def _check_action_request(floor, request) -> None:
        problems = []
        if request.link_method not in (recipient_pb2.LINK_METHOD_CALLER_ID, recipient_pb2.LINK_METHOD_PIN):
            problems.append(("link_method", "must be LINK_METHOD_CALLER_ID or LINK_METHOD_PIN"))
        if request.action not in ACTIONS:
            problems.append(("action", "must be a RecipientAction other than RECIPIENT_ACTION_UNSPECIFIED"))
        for field in ("caller_number", "pin"):
            if len(getattr(request, field)) > feature_codes.MAX_INPUT:
                problems.append((field, f"must be at most {feature_codes.MAX_INPUT} characters"))
        if request.target_queue and request.target_queue not in floor.queues:
            problems.append(("target_queue", f"queue {request.target_queue} not found"))
        if request.source not in (0, EventSource.API, EventSource.PHONE):
            problems.append(("source", "must be EVENT_SOURCE_PHONE (the default) or EVENT_SOURCE_API"))
        if problems:
            raise InvalidArgument(*problems)

    # ------------------------------------------------- seed 004: the agent's side

    @mutation
    async def ReportDeviceState(self, request, context, principal):
        floor = self.floor(principal)
        floor.report_device_state(
            request.recipient_id,
            dnd=request.dnd if request.HasField("dnd") else None,
            personal_call=request.personal_call if request.HasField("personal_call") else None,
            reachable=request.reachable if request.HasField("reachable") else None)
        return self._status(floor, request.recipient_id)

    @unary
    async def GetRecipientQueues(self, request, context, principal):
        floor = self.floor(principal)
        acting_for(floor, principal, request.recipient_id)
        queues = floor.recipient_queues(request.recipient_id)
        return recipient_pb2.GetRecipientQueuesResponse(queues=[recipient_pb2.RecipientQueue(**q) for q in queues])

    @unary
    async def ListJoinableQueues(self, request, context, principal):
        queues = self.floor(principal).joinable_queues(request.recipient_id)
        return recipient_pb2.ListJoinableQueuesResponse(queues=[
            recipient_pb2.RecipientQueue(queue_id=q.id, name=q.config.name, log_off_allowed=True) for q in queues])

    @mutation
    async def SetRecipientQueues(self, request, context, principal):
        queues = self.floor(principal).set_recipient_queues(request.recipient_id, request.queue_ids)
        return recipient_pb2.SetRecipientQueuesResponse(queues=[recipient_pb2.RecipientQueue(**q) for q in queues])

    @unary
    async def ListRecipientDnis(self, request, context, principal):
        found = self.floor(principal).recipient_dnis(request.recipient_id)
        return recipient_pb2.ListRecipientDnisResponse(dnis=[convert.dnis_message(d, qid) for qid, d in found])

    def _supervised(self, floor, supervisor_id, queue_id, recipients):
        rows = []
        for recipient in recipients:
            config = recipient.config
            first, last = split_name(config)
            rows.append(recipient_pb2.SupervisedRecipient(
                recipient_id=config.id, name=config.name, extension_name=config.extension_name,
                agent_number=config.agent_number, first_name=first, last_name=last))
        return recipient_pb2.SupervisedRecipients(supervisor_id=supervisor_id, queue_id=queue_id, recipients=rows)

    async def _change_supervised(self, request, principal, mode):
        floor = self.floor(principal)
        ids = floor.set_supervised(request.supervisor_id, request.queue_id, request.recipient_ids, mode)
        await save_supervision(self.node, floor.account_id, request.supervisor_id, request.queue_id, ids)
        return self._supervised(floor, request.supervisor_id, request.queue_id,
                                [floor.recipients[rid] for rid in ids if rid in floor.recipients])

    @mutation
    async def SetSupervisedRecipients(self, request, context, principal):
        return await self._change_supervised(request, principal, "set")

    @mutation
    async def AddSupervisedRecipients(self, request, context, principal):
        return await self._change_supervised(request, principal, "add")

    @mutation
    async def RemoveSupervisedRecipients(self, request, context, principal):
        return await self._change_supervised(request, principal, "remove")

    @unary
    async def GetSupervisedRecipients(self, request, context, principal):
        floor = self.floor(principal)
        acting_for(floor, principal, request.supervisor_id, supervisor_may=False)
        criteria, problems = [], []
        for i, criterion in enumerate(request.criteria):
            field = SEARCH_FIELDS.get(criterion.field)
            mode = SEARCH_MODES.get(criterion.mode)
            if field is None:
                problems.append((f"criteria[{i}].field", "must be a SearchField other than UNSPECIFIED"))
            if mode is None:
                problems.append((f"criteria[{i}].mode", "must be STARTS, CONTAINS or EQUALS"))
            if not 1 <= len(criterion.value) <= 128:
                problems.append((f"criteria[{i}].value", "must be 1 to 128 characters"))
            criteria.append((field, mode, criterion.value, criterion.case_insensitive))
        if problems:
            raise InvalidArgument(*problems)
        found = floor.search_supervised(request.supervisor_id, request.queue_id, criteria,
                                        request.combine_with_or, request.response_size_limit)
        return self._supervised(floor, request.supervisor_id, request.queue_id, found)

    # ------------------------------------------------------------ Connect

    @observed
    async def Connect(self, request_iterator, context):
        """The agent desktop: ``hello`` first, then offers arrive and commands
        go back; every command gets one reply carrying its ``command_id``. A
        desktop that drops while its phone rings misses that offer."""
        try:
            principal = self.principal(context, "RecipientService/Connect")
            floor = self.floor(principal)
            first = await anext(aiter(request_iterator), None)
            if first is None or first.WhichOneof("command") != "hello":
                raise InvalidArgument.field("command", "the first command must be hello")
            recipient_id = first.hello.recipient_id
            acting_for(floor, principal, recipient_id, supervisor_may=False)
            floor.recipient(recipient_id)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            await abort(context, exc)
            return
        outbox = desktops.Outbox(desktops.OUTBOX_LIMIT)
        desktop = desktops.Desktop(self._desktops, floor, recipient_id, outbox.put, lambda: outbox.finish(
            (grpc.StatusCode.ABORTED, f"another desktop connected for recipient {recipient_id}")))
        desktop.open(first.command_id)
        reader = asyncio.get_running_loop().create_task(self._read_commands(desktop, request_iterator, outbox))
        async with contextlib.aclosing(self._send_outbox(context, outbox, desktops.OUTBOX_LIMIT, reader,
                                                         desktop.close)) as taken:
            async for messages in taken:
                for message in messages:
                    yield message

    async def _send_outbox(self, context, outbox, most: int, reader: asyncio.Task, close):
        """What ``outbox`` holds, up to ``most`` at a time, until it ends (with
        its abort, if any); then stop ``reader`` and ``close`` the desktops,
        durably if that changed anything. Iterate it under ``aclosing``, so
        that this happens when the stream ends, not when it is collected."""
        try:
            while True:
                messages = await outbox.take(most)
                if not messages:
                    if outbox.end:
                        await context.abort(*outbox.end)
                    return
                yield messages
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            if close():
                await self.node.journal.durable()

    async def _read_commands(self, desktop, request_iterator, outbox) -> None:
        try:
            async for command in request_iterator:
                answer = desktop.command(command)
                try:
                    await self.node.journal.durable()
                except Exception as exc:  # not durable: answered like the unary twin
                    answer = desktops.error_event(exc, command.command_id)
                outbox.put(answer)
                if desktop.closed:  # goodbye
                    break
        except Exception:  # the client went away mid-read
            log.debug("agent stream of %s closed", desktop.recipient_id, exc_info=True)
        finally:
            outbox.finish()

    @observed
    async def ConnectGateway(self, request_iterator, context):
        """Many desktops on one stream, in batches (``desktops.Gateway``)."""
        try:
            principal = self.principal(context, "RecipientService/ConnectGateway")
            floor = self.floor(principal)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            await abort(context, exc)
            return
        gateway = desktops.Gateway(self._desktops, floor, self.node.journal)
        reader = asyncio.get_running_loop().create_task(gateway.read(request_iterator))
        async with contextlib.aclosing(self._send_outbox(context, gateway.outbox, desktops.GATEWAY_BATCH, reader,
                                                         gateway.close)) as taken:
            async for events in taken:
                yield recipient_pb2.AgentEventBatch(events=events)
