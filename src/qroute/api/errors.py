"""qroute's exceptions as gRPC statuses. A bad request names its fields
(google.rpc.BadRequest); a bug shows no internals to the client."""

from __future__ import annotations

import logging

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from qroute import errors

log = logging.getLogger("qroute.api")

CODES: dict[type[errors.QrouteError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.OutOfRange: grpc.StatusCode.OUT_OF_RANGE,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.InternalError: grpc.StatusCode.INTERNAL,
}


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    for cls in type(exc).__mro__:
        if cls in CODES:
            return CODES[cls], str(exc)
    return grpc.StatusCode.INTERNAL, "internal error"


async def abort(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    """End the call with ``exc``'s status; unexpected exceptions are logged
    with their traceback here and reach the client as a bare INTERNAL."""
    if not isinstance(exc, errors.QrouteError):
        log.exception("internal error in %s", getattr(context, "_method", "rpc"), exc_info=exc)
    code, message = status_of(exc)
    if isinstance(exc, errors.InvalidArgument):
        details = error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=field, description=why)
            for field, why in exc.violations])
        packed = any_pb2.Any()
        packed.Pack(details)
        status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=message, details=[packed])
        await context.abort_with_status(rpc_status.to_status(status))
    await context.abort(code, message)
