"""What every servicer shares: authentication, idempotent retries, and
turning exceptions into statuses, as one decorator per RPC shape."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import time
from collections.abc import Callable

import grpc
from google.protobuf import descriptor_pool, message_factory

from qroute.api.errors import abort, status_of
from qroute.errors import InvalidArgument
from qroute.keys import Principal

# Observers of every RPC, called when it ends as ``observer(method, code, seconds, streaming)``
# (method "QueueService/CreateQueue", code a StatusCode name), and of streams as they open (+1)
# and close (-1) as ``observer(method, delta)``: metrics and debug logs (qroute.metrics,
# qroute.server). With none, an RPC costs one clock read more.
rpc_observers: list[Callable[[str, str, float, bool], None]] = []
stream_observers: list[Callable[[str, int], None]] = []


def rpc_name(method) -> str:
    """``QueueService/CreateQueue`` for ``QueueServicer.CreateQueue``."""
    return method.__qualname__.replace("Servicer.", "Service/")


def _code_of(exc: BaseException, context) -> str:
    if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
        return "CANCELLED"
    if isinstance(exc, grpc.aio.AbortError):  # the handler aborted itself: the context knows the code
        try:
            code = context.code()
        except Exception:  # noqa: BLE001 (older grpc: no code())
            code = None
        return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
    return status_of(exc)[0].name


def _observe(name: str, code: str, started: float, streaming: bool) -> None:
    elapsed = time.perf_counter() - started
    for observer in rpc_observers:
        observer(name, code, elapsed, streaming)


class Servicer:
    """Base of the servicers: holds the node and the replies to retried requests."""

    def __init__(self, node) -> None:
        self.node = node

    def principal(self, context: grpc.aio.ServicerContext, rpc: str = "") -> Principal:
        """Who calls ``rpc``; a recipient key may call only the RPCs it is
        made for (``qroute.keys.RECIPIENT_KEY_RPCS``), and none unnamed."""
        principal = self.node.keys.authenticate(context.invocation_metadata())
        principal.require_rpc(rpc)
        return principal

    def floor(self, principal: Principal):
        return self.node.engine.floor(principal.require_account())


def _passthrough(exc: BaseException) -> bool:
    # GeneratorExit: grpc closes a streaming handler whose call is over (cancelled, server stopping)
    return isinstance(exc, (asyncio.CancelledError, grpc.aio.AbortError, GeneratorExit))


def unary(method):
    """A unary RPC: ``method(self, request, context, principal)``."""

    name = rpc_name(method)

    @functools.wraps(method)
    async def handler(self, request, context):
        started = time.perf_counter()
        code = "OK"
        try:
            principal = self.principal(context, name)
            return await method(self, request, context, principal)
        except BaseException as exc:
            code = _code_of(exc, context)
            if _passthrough(exc):
                raise
            await abort(context, exc)
        finally:
            if rpc_observers:
                _observe(name, code, started, False)

    return handler


def mutation(method):
    """A unary RPC that changes state. Answered once the change is durable;
    a retry with the same ``request_id`` gets the first answer, unchanged
    (also after a restart: ``answer_once``)."""

    name = rpc_name(method)

    @functools.wraps(method)
    async def durable(self, request, context, principal):
        request_id = getattr(request, "request_id", "")
        if request_id:
            return await answer_once(self.node, principal, name, request_id,
                                     lambda: method(self, request, context, principal))
        response = await method(self, request, context, principal)
        await self.node.journal.durable()
        return response

    return unary(durable)


# Answers kept in memory only: the database holds no API key secret, only its hash.
_UNSTORED_ANSWERS = frozenset({"AccountService/CreateApiKey"})


async def answer_once(node, principal: Principal, rpc: str, request_id: str, act):
    """``await act()``'s answer, durable, unless ``request_id`` was answered
    before: then that answer, once durable (``answer_of``)."""
    response = await answer_of(node, principal, rpc, request_id, act)
    await node.journal.durable()  # ours, or the first call's if it is not acknowledged yet
    return response


async def answer_of(node, principal: Principal, rpc: str, request_id: str, act):
    """``act()``'s answer (a message, or an awaitable of one), or the answer
    recorded for ``request_id``; not durable yet: the caller waits for its
    journal's commit. The answer is stored with the change it answers for
    (``Journal.attach``); a retry that comes while the first call is still
    being answered waits for it."""
    account_id = principal.account_id
    key = (principal.recipient_id, rpc, request_id)
    while True:
        answer = node.idempotency.get(account_id, key, node.clock.now_ms())
        if answer is not None:
            return _answer_type(rpc).FromString(answer)
        first = node.answering.get((account_id, key))
        if first is None:
            break
        await asyncio.shield(first)
    answered = asyncio.get_running_loop().create_future()
    node.answering[(account_id, key)] = answered
    try:
        response = act()
        if inspect.isawaitable(response):
            response = await response
        ops = node.idempotency.remember(account_id, key, response.SerializeToString(), node.clock.now_ms())
        if rpc not in _UNSTORED_ANSWERS:
            node.journal.attach(*ops)
        return response
    finally:
        del node.answering[(account_id, key)]
        answered.set_result(None)


@functools.cache
def _answer_type(rpc: str):
    service, method = rpc.split("/")
    output = descriptor_pool.Default().FindServiceByName(f"qroute.v1.{service}").FindMethodByName(method)
    return message_factory.GetMessageClass(output.output_type)


def observed(method):
    """Lets the observers see a streaming handler open, close, and end with
    its code. ``stream`` uses it; so do the hand-written bidirectional streams."""

    name = rpc_name(method)

    @functools.wraps(method)
    async def handler(self, request, context):
        started = time.perf_counter()
        code = "OK"
        for observer in stream_observers:
            observer(name, 1)
        try:
            async for message in method(self, request, context):
                yield message
        except BaseException as exc:
            code = _code_of(exc, context)
            raise
        finally:
            for observer in stream_observers:
                observer(name, -1)
            if rpc_observers:
                _observe(name, code, started, True)

    return handler


def stream(method):
    """A streaming RPC (async generator): ``method(self, request_or_iterator, context, principal)``."""

    name = rpc_name(method)

    @functools.wraps(method)
    async def authenticated(self, request, context):
        try:
            principal = self.principal(context, name)
            async for message in method(self, request, context, principal):
                yield message
        except BaseException as exc:
            if _passthrough(exc):
                raise
            await abort(context, exc)

    return observed(authenticated)


@contextlib.contextmanager
def request_fields(message_field: str):
    """Name bad fields by their path in the request: the engine validates a
    queue's ``name``, the client sent ``queue.name`` (``update_mask`` stays)."""
    try:
        yield
    except InvalidArgument as exc:
        prefix = message_field + "."
        raise InvalidArgument(*[
            (field if field.startswith(prefix) or field == "update_mask" else prefix + field, why)
            for field, why in exc.violations]) from None
