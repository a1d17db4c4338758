"""A small typed client for the qroute.v1 gRPC API (grpc.aio).

Thin methods over the generated stubs for the common operations; each
returns the ``qroute.v1`` message the RPC returns (lists are gathered over
every page) and raises ``ClientError`` (the status code, message and the
field violations of a google.rpc.BadRequest) when the call fails::

    async with Client("127.0.0.1:50051", api_key) as client:
        await client.create_queue(id="sales", name="Sales", ring_timeout=15)
        await client.create_recipient(id="ann", name="Ann", skills={"en": 5})
        await client.add_members("sales", ["ann"])
        await client.login("ann", ready=True)
        async with client.agent("ann") as desk:
            await client.enqueue("sales", caller_number="+15550100")
            offer = (await desk.wait_for("offer")).offer
            await desk.accept(offer.offer_id)

The stubs themselves are ``client.queues``, ``client.recipients``,
``client.sessions``, ``client.callbacks`` and ``client.accounts``; pass ``metadata=client.metadata``
to call one directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import Any

import grpc
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2, status_pb2

from qroute.v1 import account_pb2, account_pb2_grpc, common_pb2, queue_pb2, queue_pb2_grpc
from qroute.v1 import recipient_pb2, recipient_pb2_grpc, session_pb2, session_pb2_grpc
from qroute.v1 import callback_pb2, callback_pb2_grpc

__all__ = ["AgentDesktop", "Client", "ClientError"]

DEFAULT_TIMEOUT = 30.0  # seconds, for each unary call
_STATUS_DETAILS = "grpc-status-details-bin"


class ClientError(Exception):
    """A failed call: its gRPC ``code``, ``message``, and the ``violations``
    (``[(field, description)]``) of a google.rpc.BadRequest if it carried one."""

    def __init__(self, code: grpc.StatusCode, message: str,
                 violations: Iterable[tuple[str, str]] = ()) -> None:
        self.code = code
        self.message = message
        self.violations = list(violations)
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.message}"
        if self.violations and not all(f"{field}: {why}" in self.message for field, why in self.violations):
            text += " [" + "; ".join(f"{field}: {why}" for field, why in self.violations) + "]"
        return text

    @property
    def fields(self) -> list[str]:
        """The fields named by the violations, in order."""
        return [field for field, _ in self.violations]

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> ClientError:
        """Parse a failed call (``grpc.aio.AioRpcError`` or a sync ``grpc.RpcError``)."""
        violations = []
        for key, value in error.trailing_metadata() or ():
            if key != _STATUS_DETAILS:
                continue
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                bad_request = error_details_pb2.BadRequest()
                if detail.Unpack(bad_request):
                    violations.extend((v.field, v.description) for v in bad_request.field_violations)
        return cls(error.code(), error.details() or "", violations)


def _read_bytes(value: str | bytes | os.PathLike | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    with open(value, "rb") as file:
        return file.read()


class Client:
    """A connection to one qroute server, acting with one API key.

    ``tls_ca`` (PEM bytes, or the path of a PEM file) makes the channel TLS
    and trusts that CA; ``tls=True`` uses TLS with the system's roots.
    Use as ``async with Client(...) as client`` or call ``close()``.
    """

    def __init__(self, target: str, api_key: str, *, tls_ca: str | bytes | os.PathLike | None = None,
                 tls: bool = False, timeout: float | None = DEFAULT_TIMEOUT,
                 options: Iterable[tuple[str, Any]] = ()) -> None:
        if tls_ca is not None or tls:
            credentials = grpc.ssl_channel_credentials(root_certificates=_read_bytes(tls_ca))
            self.channel = grpc.aio.secure_channel(target, credentials, options=list(options))
        else:
            self.channel = grpc.aio.insecure_channel(target, options=list(options))
        self.target = target
        self.timeout = timeout
        self.metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {api_key}"),)
        self.accounts = account_pb2_grpc.AccountServiceStub(self.channel)
        self.queues = queue_pb2_grpc.QueueServiceStub(self.channel)
        self.recipients = recipient_pb2_grpc.RecipientServiceStub(self.channel)
        self.sessions = session_pb2_grpc.SessionServiceStub(self.channel)
        self.callbacks = callback_pb2_grpc.CallbackServiceStub(self.channel)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close()

    async def _call(self, method, request):
        try:
            return await method(request, metadata=self.metadata, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise ClientError.from_rpc_error(exc) from exc

    async def _pages(self, method, request, field: str) -> list:
        items: list = []
        while True:
            response = await self._call(method, request)
            items.extend(getattr(response, field))
            if not response.next_page_token:
                return items
            request.page_token = response.next_page_token

    # ------------------------------------------------------ accounts (admin)

    async def create_account(self, name: str, time_zone: str = "", request_id: str = "") -> account_pb2.Account:
        return await self._call(self.accounts.CreateAccount, account_pb2.CreateAccountRequest(
            name=name, time_zone=time_zone, request_id=request_id))

    async def get_account(self, account_id: str) -> account_pb2.Account:
        return await self._call(self.accounts.GetAccount, account_pb2.GetAccountRequest(account_id=account_id))

    async def list_accounts(self) -> list[account_pb2.Account]:
        return await self._pages(self.accounts.ListAccounts, account_pb2.ListAccountsRequest(), "accounts")

    async def create_api_key(self, account_id: str, description: str = "",
                             request_id: str = "", recipient_id: str = "") -> account_pb2.ApiKey:
        """A new key; its ``secret`` (the full bearer key) is shown only here.
        With ``recipient_id`` the key acts for that recipient (and the ones it supervises) only."""
        return await self._call(self.accounts.CreateApiKey, account_pb2.CreateApiKeyRequest(
            account_id=account_id, description=description, request_id=request_id, recipient_id=recipient_id))

    async def list_api_keys(self, account_id: str) -> list[account_pb2.ApiKey]:
        response = await self._call(self.accounts.ListApiKeys,
                                    account_pb2.ListApiKeysRequest(account_id=account_id))
        return list(response.api_keys)

    async def revoke_api_key(self, api_key_id: str) -> None:
        await self._call(self.accounts.RevokeApiKey, account_pb2.RevokeApiKeyRequest(api_key_id=api_key_id))

    # ---------------------------------------------------------------- queues

    async def create_queue(self, queue: queue_pb2.Queue | None = None, *, request_id: str = "",
                           **fields: Any) -> queue_pb2.Queue:
        """Create ``queue``, or a Queue built from ``fields`` (``id=``, ``name=``, ``ring_timeout=``...)."""
        message = queue_pb2.Queue(**fields) if queue is None else queue
        return await self._call(self.queues.CreateQueue,
                                queue_pb2.CreateQueueRequest(queue=message, request_id=request_id))

    async def get_queue(self, queue_id: str) -> queue_pb2.Queue:
        return await self._call(self.queues.GetQueue, queue_pb2.GetQueueRequest(queue_id=queue_id))

    async def update_queue(self, queue_id: str, *, request_id: str = "", **fields: Any) -> queue_pb2.Queue:
        """Change exactly the ``fields`` given (they make the update mask)."""
        return await self._call(self.queues.UpdateQueue, queue_pb2.UpdateQueueRequest(
            queue=queue_pb2.Queue(id=queue_id, **fields), update_mask=field_mask_pb2.FieldMask(paths=list(fields)),
            request_id=request_id))

    async def delete_queue(self, queue_id: str, force: bool = False) -> None:
        await self._call(self.queues.DeleteQueue, queue_pb2.DeleteQueueRequest(queue_id=queue_id, force=force))

    async def list_queues(self) -> list[queue_pb2.Queue]:
        return await self._pages(self.queues.ListQueues, queue_pb2.ListQueuesRequest(), "queues")

    async def queue_status(self, queue_id: str) -> queue_pb2.QueueStatus:
        return await self._call(self.queues.GetQueueStatus, queue_pb2.GetQueueStatusRequest(queue_id=queue_id))

    async def queue_statuses(self, queue_ids: Iterable[str] = ()) -> dict[str, queue_pb2.QueueStatus]:
        """Status by queue id; no ids means every queue."""
        response = await self._call(self.queues.BatchGetQueueStatus,
                                    queue_pb2.BatchGetQueueStatusRequest(queue_ids=list(queue_ids)))
        return dict(response.statuses)

    async def watch_queue_status(self, queue_ids: Iterable[str] = (),
                                 interval_ms: int = 0) -> AsyncIterator[queue_pb2.QueueStatus]:
        """Each queue's status now, then whenever it changes (until cancelled)."""
        call = self.queues.WatchQueueStatus(queue_pb2.WatchQueueStatusRequest(
            queue_ids=list(queue_ids), interval_ms=interval_ms), metadata=self.metadata)
        try:
            async for status in call:
                yield status
        except grpc.aio.AioRpcError as exc:
            raise ClientError.from_rpc_error(exc) from exc
        finally:
            call.cancel()

    async def add_members(self, queue_id: str, members: Iterable[common_pb2.Member | str],
                          request_id: str = "") -> list[common_pb2.Member]:
        """Add (or change) members: ``Member`` messages, or recipient ids (tier 1)."""
        listed = [common_pb2.Member(recipient_id=m) if isinstance(m, str) else m for m in members]
        response = await self._call(self.queues.AddMembers, queue_pb2.AddMembersRequest(
            queue_id=queue_id, members=listed, request_id=request_id))
        return list(response.members)

    async def remove_members(self, queue_id: str, recipient_ids: Iterable[str], request_id: str = "") -> list[str]:
        response = await self._call(self.queues.RemoveMembers, queue_pb2.RemoveMembersRequest(
            queue_id=queue_id, recipient_ids=list(recipient_ids), request_id=request_id))
        return list(response.recipient_ids)

    async def list_members(self, queue_id: str) -> list[common_pb2.Member]:
        response = await self._call(self.queues.ListMembers, queue_pb2.ListMembersRequest(queue_id=queue_id))
        return list(response.members)

    # ------------------------------------------------------------ recipients

    async def create_recipient(self, recipient: recipient_pb2.Recipient | None = None, *, request_id: str = "",
                               **fields: Any) -> recipient_pb2.Recipient:
        """Create ``recipient``, or a Recipient built from ``fields`` (``id=``, ``name=``, ``skills=``...)."""
        message = recipient_pb2.Recipient(**fields) if recipient is None else recipient
        return await self._call(self.recipients.CreateRecipient, recipient_pb2.CreateRecipientRequest(
            recipient=message, request_id=request_id))

    async def get_recipient(self, recipient_id: str) -> recipient_pb2.Recipient:
        return await self._call(self.recipients.GetRecipient,
                                recipient_pb2.GetRecipientRequest(recipient_id=recipient_id))

    async def update_recipient(self, recipient_id: str, *, request_id: str = "",
                               **fields: Any) -> recipient_pb2.Recipient:
        """Change exactly the ``fields`` given (they make the update mask)."""
        return await self._call(self.recipients.UpdateRecipient, recipient_pb2.UpdateRecipientRequest(
            recipient=recipient_pb2.Recipient(id=recipient_id, **fields),
            update_mask=field_mask_pb2.FieldMask(paths=list(fields)), request_id=request_id))

    async def delete_recipient(self, recipient_id: str) -> None:
        await self._call(self.recipients.DeleteRecipient,
                         recipient_pb2.DeleteRecipientRequest(recipient_id=recipient_id))

    async def list_recipients(self) -> list[recipient_pb2.Recipient]:
        return await self._pages(self.recipients.ListRecipients, recipient_pb2.ListRecipientsRequest(),
                                 "recipients")

    async def login(self, recipient_id: str, ready: bool = False) -> recipient_pb2.RecipientStatus:
        """Log in: AWAY unless ``ready``."""
        return await self._call(self.recipients.Login,
                                recipient_pb2.LoginRequest(recipient_id=recipient_id, ready=ready))

    async def logout(self, recipient_id: str) -> recipient_pb2.RecipientStatus:
        return await self._call(self.recipients.Logout, recipient_pb2.LogoutRequest(recipient_id=recipient_id))

    async def set_availability(self, recipient_id: str, ready: bool, queue_id: str = "",
                               unavailable_code: str = "") -> recipient_pb2.RecipientStatus:
        """READY (``ready=True``) or AWAY, globally or for ``queue_id`` only."""
        return await self._call(self.recipients.SetAvailability, recipient_pb2.SetAvailabilityRequest(
            recipient_id=recipient_id, availability=_availability(ready), queue_id=queue_id,
            unavailable_code=unavailable_code))

    async def recipient_status(self, recipient_id: str) -> recipient_pb2.RecipientStatus:
        return await self._call(self.recipients.GetRecipientStatus,
                                recipient_pb2.GetRecipientStatusRequest(recipient_id=recipient_id))

    async def accept_offer(self, offer_id: str) -> session_pb2.Session:
        """Accept on the agent's behalf (a phone system saw it answer); the connected session."""
        return await self._call(self.recipients.AcceptOffer, recipient_pb2.AcceptOfferRequest(offer_id=offer_id))

    async def reject_offer(self, offer_id: str) -> session_pb2.Session:
        return await self._call(self.recipients.RejectOffer, recipient_pb2.RejectOfferRequest(offer_id=offer_id))

    async def execute_action(self, link_method: int, action: int, *, caller_number: str = "", pin: str = "",
                             target_queue: str = "", success_media: str = "", failure_media: str = "",
                             source: int = 0) -> recipient_pb2.ExecuteActionResponse:
        """The callflow feature code: ``link_method`` a LinkMethod, ``action`` a RecipientAction."""
        return await self._call(self.recipients.ExecuteAction, recipient_pb2.ExecuteActionRequest(
            link_method=link_method, action=action, caller_number=caller_number, pin=pin,
            target_queue=target_queue, success_media=success_media, failure_media=failure_media, source=source))

    def agent(self, recipient_id: str) -> AgentDesktop:
        """The agent desktop channel (``Connect``) of a recipient, opened by
        ``desk = await client.agent(id)`` or ``async with client.agent(id) as desk``."""
        return AgentDesktop(self, recipient_id)

    def gateway(self) -> AgentGateway:
        """A ``ConnectGateway`` stream for many desktops: ``async with
        client.gateway() as gw: desk = await gw.desktop(id)``."""
        return AgentGateway(self)

    # -------------------------------------------------------------- sessions

    async def enqueue(self, queue_id: str, caller_number: str = "", caller_name: str = "", priority: int = 0,
                      skills: Mapping[str, int] | None = None, properties: Mapping[str, Any] | None = None,
                      request_id: str = "") -> session_pb2.Session:
        return await self._call(self.sessions.Enqueue, enqueue_request(
            queue_id, caller_number, caller_name, priority, skills, properties, request_id))

    async def enqueue_stream(self, requests: Iterable[session_pb2.EnqueueRequest]
                             | AsyncIterable[session_pb2.EnqueueRequest]) -> AsyncIterator[session_pb2.Session]:
        """``EnqueueStream``: one Session per request, in request order."""
        call = self.sessions.EnqueueStream(requests, metadata=self.metadata)
        try:
            async for session in call:
                yield session
        except grpc.aio.AioRpcError as exc:
            raise ClientError.from_rpc_error(exc) from exc
        finally:
            call.cancel()

    async def abandon(self, session_id: str) -> session_pb2.Session:
        return await self._call(self.sessions.Abandon, session_pb2.AbandonRequest(session_id=session_id))

    async def hangup(self, session_id: str) -> session_pb2.Session:
        return await self._call(self.sessions.Hangup, session_pb2.HangupRequest(session_id=session_id))

    async def transfer(self, session_id: str, queue_id: str, request_id: str = "") -> session_pb2.Session:
        return await self._call(self.sessions.Transfer, session_pb2.TransferRequest(
            session_id=session_id, queue_id=queue_id, request_id=request_id))

    async def get_session(self, session_id: str) -> session_pb2.Session:
        return await self._call(self.sessions.GetSession, session_pb2.GetSessionRequest(session_id=session_id))

    async def list_sessions(self, queue_id: str = "", states: Iterable[int] = ()) -> list[session_pb2.Session]:
        """Waiting sessions in serving order, then the others (ENDED ones only when in ``states``)."""
        return await self._pages(self.sessions.ListSessions, session_pb2.ListSessionsRequest(
            queue_id=queue_id, states=list(states)), "sessions")

    # ------------------------------------------------------------- callbacks

    async def line_up_caller(self, line_id: str, phone: str, channel: int, source: str = "Phone", *,
                             lang: str = "", skills: Iterable[str] = (), properties: Mapping[str, Any] | None = None,
                             request_id: str = "") -> callback_pb2.CallbackCaller:
        """Line up ``phone`` on the queue ``line_id``; ``channel`` a CallbackChannel value."""
        request = callback_pb2.LineUpCallerRequest(line_id=line_id, phone=phone, channel=channel, source=source,
                                                   lang=lang, skills=list(skills), request_id=request_id)
        if properties:
            request.properties.update(dict(properties))
        return await self._call(self.callbacks.LineUpCaller, request)

    async def verify_caller(self, line_id: str, phone: str) -> callback_pb2.VerifyCallerResponse:
        return await self._call(self.callbacks.VerifyCaller, callback_pb2.CallerKey(line_id=line_id, phone=phone))

    async def get_caller(self, line_id: str, phone: str) -> callback_pb2.CallbackCaller:
        return await self._call(self.callbacks.GetCaller, callback_pb2.CallerKey(line_id=line_id, phone=phone))

    async def notify_caller_connected(self, line_id: str, phone: str) -> callback_pb2.CallbackCaller:
        return await self._call(self.callbacks.NotifyCallerConnected,
                                callback_pb2.CallerKey(line_id=line_id, phone=phone))

    async def notify_caller_transferred(self, line_id: str, phone: str, agent_id: str = "",
                                        wait_time_when_up: int | None = None) -> callback_pb2.CallbackCaller:
        return await self._call(self.callbacks.NotifyCallerTransferred, callback_pb2.NotifyCallerTransferredRequest(
            line_id=line_id, phone=phone, agent_id=agent_id, wait_time_when_up=wait_time_when_up))

    async def update_caller_information(self, line_id: str, phone: str, **fields: Any) -> callback_pb2.CallbackCaller:
        """``fields``: those of UpdateCallerInformationRequest (``service_state=``, ``talk_time=``...)."""
        return await self._call(self.callbacks.UpdateCallerInformation,
                                callback_pb2.UpdateCallerInformationRequest(line_id=line_id, phone=phone, **fields))

    async def list_callers_waiting(self, line_id: str = "") -> list[callback_pb2.CallbackCaller]:
        """WAITING and NOTIFIED callers of the line (or of every line), in the order they will be served."""
        response = await self._call(self.callbacks.ListCallersWaiting,
                                    callback_pb2.ListCallersWaitingRequest(line_id=line_id))
        return list(response.callers)


def enqueue_request(queue_id: str, caller_number: str = "", caller_name: str = "", priority: int = 0,
                    skills: Mapping[str, int] | None = None, properties: Mapping[str, Any] | None = None,
                    request_id: str = "") -> session_pb2.EnqueueRequest:
    request = session_pb2.EnqueueRequest(
        queue_id=queue_id, caller=common_pb2.Caller(number=caller_number, name=caller_name),
        priority=priority, skills=dict(skills or {}), request_id=request_id)
    if properties:
        request.properties.update(dict(properties))
    return request


def _availability(ready: bool) -> int:
    return common_pb2.AVAILABILITY_READY if ready else common_pb2.AVAILABILITY_AWAY


class AgentDesktop:
    """One recipient's ``Connect`` stream.

    Events the server sends on its own (``offer``, ``offer_cancelled``,
    ``state_changed``) come from ``next_event()`` / ``wait_for(kind)`` in
    order. Each command waits for the event answering it and returns the
    resulting ``RecipientStatus``, or raises ``ClientError`` with the code the
    equivalent unary call would fail with. ``status`` is the status the
    server sent on opening. A stream the server ends (another desktop opened
    for the same recipient: ABORTED) makes ``next_event`` and the commands
    raise ``ClientError``.
    """

    def __init__(self, client: Client, recipient_id: str) -> None:
        self.client = client
        self.recipient_id = recipient_id
        self.status: recipient_pb2.RecipientStatus | None = None
        self._commands: asyncio.Queue = asyncio.Queue()
        self._events: asyncio.Queue = asyncio.Queue()
        self._replies: dict[str, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._call = None
        self._reader: asyncio.Task | None = None
        self._ended: ClientError | None = None  # how the stream ended
        self._closed = False

    def __await__(self):
        return self._open().__await__()

    async def __aenter__(self) -> AgentDesktop:
        return await self._open()

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    async def _open(self) -> AgentDesktop:
        """Send hello and wait for the status it is answered with."""
        if self._call is not None:
            return self
        self._call = self.client.recipients.Connect(_until_none(self._commands), metadata=self.client.metadata)
        self._reader = asyncio.get_running_loop().create_task(self._read())
        hello = recipient_pb2.AgentCommand(hello=recipient_pb2.AgentCommand.Hello(recipient_id=self.recipient_id))
        try:
            self.status = await self._command(hello)
        except BaseException:
            await self.close()
            raise
        return self


    async def _read(self) -> None:
        self._end(await _read_stream(self._call, self._receive, "agent"))
        self._commands.put_nowait(None)  # ends the outgoing commands

    def _receive(self, event: recipient_pb2.AgentEvent) -> None:
        reply = self._replies.pop(event.correlation, None) if event.correlation else None
        if reply is None:
            self._events.put_nowait(event)
        elif not reply.done():
            reply.set_result(event)

    def _end(self, failure: ClientError) -> None:
        self._ended = failure
        for reply in self._replies.values():
            if not reply.done():
                reply.set_exception(failure)
        self._replies.clear()
        self._events.put_nowait(failure)

    def _open_for_commands(self) -> bool:
        return self._reader is not None and not self._reader.done()

    def _send(self, command: recipient_pb2.AgentCommand) -> None:
        self._commands.put_nowait(command)

    async def _command(self, command: recipient_pb2.AgentCommand) -> recipient_pb2.RecipientStatus:
        if self._ended is not None:
            raise ClientError(self._ended.code, self._ended.message)
        if not self._open_for_commands():
            raise ClientError(grpc.StatusCode.CANCELLED, "the agent stream is closed")
        command.command_id = str(next(self._ids))
        reply = asyncio.get_running_loop().create_future()
        self._replies[command.command_id] = reply
        self._send(command)
        event = await reply
        kind = event.WhichOneof("event")
        if kind == "error":
            raise ClientError(_status_code(event.error.code), event.error.message)
        if kind == "supervised_state_changed":  # a command forced on one of its agents
            return event.supervised_state_changed
        return event.state_changed

    async def next_event(self, timeout: float | None = None) -> recipient_pb2.AgentEvent:
        """The next event the server sent on its own; ``ClientError`` once the stream ended."""
        item = await asyncio.wait_for(self._events.get(), timeout)
        if isinstance(item, ClientError):
            self._events.put_nowait(item)  # every later call fails the same way
            raise item
        return item

    async def wait_for(self, kind: str, timeout: float | None = None) -> recipient_pb2.AgentEvent:
        """Skip events until one of ``kind`` (``"offer"``, ``"offer_cancelled"``, ``"state_changed"``,
        ``"supervised_state_changed"``)."""
        async def skip() -> recipient_pb2.AgentEvent:
            while True:
                event = await self.next_event()
                if event.WhichOneof("event") == kind:
                    return event

        return await asyncio.wait_for(skip(), timeout)

    async def accept(self, offer_id: str) -> recipient_pb2.RecipientStatus:
        return await self._command(recipient_pb2.AgentCommand(accept=recipient_pb2.AgentCommand.Accept(
            offer_id=offer_id)))

    async def reject(self, offer_id: str) -> recipient_pb2.RecipientStatus:
        return await self._command(recipient_pb2.AgentCommand(reject=recipient_pb2.AgentCommand.Reject(
            offer_id=offer_id)))

    async def hangup(self, session_id: str) -> recipient_pb2.RecipientStatus:
        return await self._command(recipient_pb2.AgentCommand(hangup=recipient_pb2.AgentCommand.Hangup(
            session_id=session_id)))

    async def finish_wrapup(self) -> recipient_pb2.RecipientStatus:
        return await self._command(recipient_pb2.AgentCommand(
            finish_wrapup=recipient_pb2.AgentCommand.FinishWrapup()))

    async def set_availability(self, ready: bool, queue_id: str = "", unavailable_code: str = "",
                               recipient_id: str = "") -> recipient_pb2.RecipientStatus:
        """READY or AWAY for this desktop's recipient, or (``recipient_id``) for one it supervises."""
        return await self._command(recipient_pb2.AgentCommand(
            set_availability=recipient_pb2.AgentCommand.SetAvailability(
                availability=_availability(ready), queue_id=queue_id, unavailable_code=unavailable_code,
                recipient_id=recipient_id)))

    async def login(self, ready: bool = False) -> recipient_pb2.RecipientStatus:
        return await self._command(recipient_pb2.AgentCommand(login=recipient_pb2.AgentCommand.Login(ready=ready)))

    async def logout(self, recipient_id: str = "") -> recipient_pb2.RecipientStatus:
        """Log out this desktop's recipient, or (``recipient_id``) one it supervises."""
        return await self._command(recipient_pb2.AgentCommand(
            logout=recipient_pb2.AgentCommand.Logout(recipient_id=recipient_id)))

    async def close(self) -> None:
        """Drop the stream (as a desktop that goes away: what rings counts as missed)."""
        if self._closed:
            return
        self._closed = True
        self._commands.put_nowait(None)
        if self._call is not None:
            self._call.cancel()
        if self._reader is not None:
            try:
                await self._reader
            except asyncio.CancelledError:
                pass


class GatewayDesktop(AgentDesktop):
    """One desktop on an ``AgentGateway``: the same commands and events as an
    ``AgentDesktop``; ``close()`` says goodbye (what rings counts as missed)."""

    def __init__(self, gateway: AgentGateway, recipient_id: str) -> None:
        super().__init__(gateway.client, recipient_id)
        self.gateway = gateway
        self._ids = gateway.ids  # no late answer to a desktop before it can match a command of this one

    async def _open(self) -> GatewayDesktop:
        if self._call is not None:
            return self
        self._call = self.gateway
        hello = recipient_pb2.AgentCommand(hello=recipient_pb2.AgentCommand.Hello(recipient_id=self.recipient_id))
        try:
            self.status = await self._command(hello)
        except BaseException:
            if self.gateway.desktops.get(self.recipient_id) is self:
                del self.gateway.desktops[self.recipient_id]
            raise
        return self

    def _open_for_commands(self) -> bool:
        return self.gateway.open

    def _send(self, command: recipient_pb2.AgentCommand) -> None:
        command.recipient_id = self.recipient_id
        self.gateway.send(command)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._ended is None and self._call is not None:
            with contextlib.suppress(ClientError):
                await self._command(recipient_pb2.AgentCommand(goodbye=recipient_pb2.AgentCommand.Goodbye()))
        if self.gateway.desktops.get(self.recipient_id) is self:
            del self.gateway.desktops[self.recipient_id]
        if self._ended is None:
            self._end(ClientError(grpc.StatusCode.CANCELLED, "the desktop said goodbye"))


class AgentGateway:
    """A ``ConnectGateway`` stream carrying many desktops: the commands
    given in one loop iteration go out as one batch. ``desktop(id)`` opens
    one (``await gateway.desktop(id)``); closing the gateway drops them all.
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self.desktops: dict[str, GatewayDesktop] = {}
        self.ids = itertools.count(1)  # command ids, shared by its desktops
        self.open = False
        self._batch: list[recipient_pb2.AgentCommand] = []
        self._batches: asyncio.Queue = asyncio.Queue()
        self._call = None
        self._reader: asyncio.Task | None = None

    async def __aenter__(self) -> AgentGateway:
        self.start()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    def start(self) -> None:
        if self._call is None:
            self._call = self.client.recipients.ConnectGateway(_until_none(self._batches), metadata=self.client.metadata)
            self._reader = asyncio.get_running_loop().create_task(self._read())
            self.open = True

    def desktop(self, recipient_id: str) -> GatewayDesktop:
        """Open (``await``) a desktop for ``recipient_id`` on this stream."""
        if recipient_id in self.desktops:
            raise ValueError(f"recipient {recipient_id} has a desktop on this gateway already")
        self.start()
        desktop = self.desktops[recipient_id] = GatewayDesktop(self, recipient_id)
        return desktop

    def send(self, command: recipient_pb2.AgentCommand) -> None:
        if not self._batch:
            asyncio.get_running_loop().call_soon(self._flush)
        self._batch.append(command)

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        self._batches.put_nowait(recipient_pb2.AgentCommandBatch(commands=batch))


    def _receive(self, batch: recipient_pb2.AgentEventBatch) -> None:
        for event in batch.events:
            desktop = self.desktops.get(event.recipient_id)
            if desktop is None:
                continue
            if event.HasField("error") and not event.correlation:  # another desktop took over
                del self.desktops[event.recipient_id]
                desktop._end(ClientError(_status_code(event.error.code), event.error.message))
            else:
                desktop._receive(event)

    async def _read(self) -> None:
        failure = await _read_stream(self._call, self._receive, "gateway")
        self.open = False
        for desktop in list(self.desktops.values()):
            desktop._end(failure)
        self._batches.put_nowait(None)

    async def close(self) -> None:
        """Drop the stream: every desktop on it goes away (what rings counts as missed)."""
        if self._call is None or not self.open:
            return
        self.open = False
        self._batches.put_nowait(None)
        self._call.cancel()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


async def _until_none(queue: asyncio.Queue) -> AsyncIterator:
    """What ``queue`` gives, until it gives None: a stream's outgoing messages."""
    while (item := await queue.get()) is not None:
        yield item


async def _read_stream(call, receive, what: str) -> ClientError:
    """Hand every message of ``call`` to ``receive``; how the stream ended."""
    try:
        async for message in call:
            receive(message)
        return ClientError(grpc.StatusCode.CANCELLED, f"the server ended the {what} stream")
    except grpc.aio.AioRpcError as exc:
        return ClientError.from_rpc_error(exc)
    except asyncio.CancelledError:
        return ClientError(grpc.StatusCode.CANCELLED, f"the {what} stream was closed")


def _status_code(value: int) -> grpc.StatusCode:
    """The grpc.StatusCode of a numeric google.rpc.Code."""
    return next((code for code in grpc.StatusCode if code.value[0] == value), grpc.StatusCode.UNKNOWN)
