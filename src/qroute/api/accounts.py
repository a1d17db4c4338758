"""AccountService: the admin key's."""

from __future__ import annotations

from google.protobuf import empty_pb2

from qroute.api.common import Servicer, mutation, unary
from qroute.errors import NotFound
from qroute.api.convert import timestamp
from qroute.api.pages import page
from qroute.v1 import account_pb2, account_pb2_grpc


def account_message(account) -> account_pb2.Account:
    return account_pb2.Account(id=account.id, name=account.name, time_zone=account.time_zone,
                               create_time=timestamp(account.create_time_ms))


def key_message(doc: dict, secret: str = "") -> account_pb2.ApiKey:
    return account_pb2.ApiKey(id=doc["id"], account_id=doc["account_id"], description=doc["description"],
                              secret=secret, create_time=timestamp(doc["create_time_ms"]),
                              recipient_id=doc.get("recipient_id", ""))


class AccountServicer(Servicer, account_pb2_grpc.AccountServiceServicer):
    # Account writes go straight to storage and are awaited there: durable on return.

    @mutation
    async def CreateAccount(self, request, context, principal):
        principal.require_admin()
        return account_message(await self.node.create_account(request.name, request.time_zone))

    @unary
    async def GetAccount(self, request, context, principal):
        if not principal.admin and principal.account_id != request.account_id:
            raise NotFound(f"account {request.account_id} not found")  # another account is invisible
        return account_message(self.node.account(request.account_id))

    @unary
    async def ListAccounts(self, request, context, principal):
        principal.require_admin()
        accounts, token = page(list(self.node.accounts.values()), request.page_size, request.page_token,
                               key=lambda account: account.id)
        return account_pb2.ListAccountsResponse(accounts=[account_message(a) for a in accounts],
                                                next_page_token=token)

    @mutation
    async def CreateApiKey(self, request, context, principal):
        principal.require_admin()
        doc, key = await self.node.create_api_key(request.account_id, request.description, request.recipient_id)
        return key_message(doc, key)

    @unary
    async def ListApiKeys(self, request, context, principal):
        principal.require_admin()
        self.node.account(request.account_id)
        docs = sorted((d for d in self.node.api_keys.values() if d["account_id"] == request.account_id),
                      key=lambda d: d["create_time_ms"])
        return account_pb2.ListApiKeysResponse(api_keys=[key_message(d) for d in docs])

    @unary
    async def RevokeApiKey(self, request, context, principal):
        principal.require_admin()
        await self.node.revoke_api_key(request.api_key_id)
        return empty_pb2.Empty()
