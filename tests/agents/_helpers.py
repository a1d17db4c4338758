"""Calls the generic client does not wrap: agent settings and the seed 004 RPCs."""

from __future__ import annotations

from google.protobuf import field_mask_pb2

from qroute.v1 import account_pb2, account_pb2_grpc, common_pb2, recipient_pb2


async def get_settings(client) -> account_pb2.AgentSettings:
    stub = account_pb2_grpc.AgentSettingsServiceStub(client.channel)
    return await client._call(stub.GetAgentSettings, account_pb2.GetAgentSettingsRequest())


async def update_settings(client, **fields) -> account_pb2.AgentSettings:
    """Change exactly ``fields`` (they make the update mask)."""
    stub = account_pb2_grpc.AgentSettingsServiceStub(client.channel)
    return await client._call(stub.UpdateAgentSettings, account_pb2.UpdateAgentSettingsRequest(
        settings=account_pb2.AgentSettings(**fields), update_mask=field_mask_pb2.FieldMask(paths=list(fields))))


async def report_device(client, recipient_id: str, **state) -> recipient_pb2.RecipientStatus:
    return await client._call(client.recipients.ReportDeviceState,
                              recipient_pb2.ReportDeviceStateRequest(recipient_id=recipient_id, **state))


async def call(client, method: str, **fields):
    """``RecipientService.<method>`` with a request built from ``fields``."""
    request_type = getattr(recipient_pb2, {
        "ReportDeviceState": "ReportDeviceStateRequest"}.get(method, method + "Request"))
    return await client._call(getattr(client.recipients, method), request_type(**fields))


def dnis(number: str, name: str = "") -> common_pb2.QueueDnis:
    return common_pb2.QueueDnis(number=number, name=name)
