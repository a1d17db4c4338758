"""What every servicer shares: authentication, idempotent retries, and
turning exceptions into statuses, as one decorator per RPC shape."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable

import grpc

from qroute.api.errors import abort, status_of
from qroute.errors import InvalidArgument
from qroute.keys import Principal

IDEMPOTENCY_CACHE = 100_000  # retried requests remembered in memory

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

    def principal(self, context: grpc.aio.ServicerContext) -> Principal:
        return self.node.keys.authenticate(context.invocation_metadata())

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
            principal = self.principal(context)
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
    a retry with the same ``request_id`` gets the first answer, unchanged."""

    @functools.wraps(method)
    async def durable(self, request, context, principal):
        request_id = getattr(request, "request_id", "")
        cache = self.node.idempotency
        key = (principal.account_id, method.__name__, request_id)
        if request_id and key in cache:
            return cache[key]
        response = await method(self, request, context, principal)
        await self.node.journal.durable()
        if request_id:
            cache[key] = response
            if len(cache) > IDEMPOTENCY_CACHE:
                cache.popitem(last=False)
        return response

    return unary(durable)


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

    @functools.wraps(method)
    async def authenticated(self, request, context):
        try:
            principal = self.principal(context)
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
