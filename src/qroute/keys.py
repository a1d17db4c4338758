"""API keys: who is calling. ``authorization: Bearer <key>`` on every call.

A key is ``qr_<key id>_<secret>``; only a SHA-256 of the secret is stored
(secrets are 256 random bits, so a fast hash suffices) and compared in
constant time. The admin key manages accounts; an account key sees only its
own account; a recipient key (``recipient_id`` set) acts only for its
recipient and, if that recipient is a supervisor, for the recipients it
supervises (checked by the servicers: who it supervises changes at run time).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from qroute.errors import PermissionDenied, Unauthenticated

PREFIX = "qr_"
MAX_REMEMBERED = 10_000  # authenticated keys remembered at once


# What a recipient key may call (every other RPC is PERMISSION_DENIED for it); each of these
# checks that the recipient it names is the key's own or one it supervises.
RECIPIENT_KEY_RPCS = frozenset({
    "RecipientService/Login", "RecipientService/Logout", "RecipientService/SetAvailability",
    "RecipientService/GetRecipientStatus", "RecipientService/GetRecipient", "RecipientService/GetRecipientQueues",
    "RecipientService/AcceptOffer", "RecipientService/RejectOffer", "RecipientService/GetSupervisedRecipients",
    "RecipientService/Connect", "EventService/Subscribe",
})


@dataclass(frozen=True, slots=True)
class Principal:
    account_id: str  # empty for the admin
    key_id: str
    recipient_id: str = ""  # set for a recipient key: it acts for this recipient only

    @property
    def admin(self) -> bool:
        return not self.account_id

    def require_rpc(self, rpc: str) -> None:
        """PermissionDenied if a recipient key calls an RPC outside ``RECIPIENT_KEY_RPCS``."""
        if self.recipient_id and rpc not in RECIPIENT_KEY_RPCS:
            raise PermissionDenied(f"this API key acts for recipient {self.recipient_id} only and may not "
                                   f"call {rpc or 'this RPC'}; use an account-wide key")

    def require_admin(self) -> None:
        if not self.admin:
            raise PermissionDenied("only the admin key may do this")

    def require_account(self) -> str:
        if self.admin:
            raise PermissionDenied("use an account's API key: the admin key manages accounts only")
        return self.account_id


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key(key_id: str | None = None) -> tuple[str, str, str]:
    """``(key_id, full_key, secret_hash)`` for a new key."""
    key_id = key_id or secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return key_id, f"{PREFIX}{key_id}_{secret}", hash_secret(secret)


class KeyRing:
    """Valid keys by id, held in memory; the storage keeps them across restarts."""

    def __init__(self, admin_key: str) -> None:
        self._keys: dict[str, tuple[str, str, str]] = {}  # key id -> (account id, secret hash, recipient id)
        # authorization header -> its principal, for the keys seen lately: a key is hashed and
        # compared once, not on every call (in memory only; dropped when its key changes or goes)
        self._principals: dict[str, Principal] = {}
        admin_id, admin_secret = self.split(admin_key)
        self._keys[admin_id] = ("", hash_secret(admin_secret), "")

    @staticmethod
    def split(key: str) -> tuple[str, str]:
        if not key.startswith(PREFIX) or "_" not in key[len(PREFIX):]:
            raise Unauthenticated("malformed API key")
        key_id, _, secret = key[len(PREFIX):].partition("_")
        return key_id, secret

    def add(self, key_id: str, account_id: str, secret_hash: str, recipient_id: str = "") -> None:
        self._keys[key_id] = (account_id, secret_hash, recipient_id)
        self._forget(key_id)

    def remove(self, key_id: str) -> None:
        self._keys.pop(key_id, None)
        self._forget(key_id)

    def _forget(self, key_id: str) -> None:
        for header in [h for h, principal in self._principals.items() if principal.key_id == key_id]:
            del self._principals[header]

    def authenticate(self, metadata) -> Principal:
        header = ""
        for name, value in metadata or ():
            if name == "authorization":
                header = value
                break
        principal = self._principals.get(header)
        if principal is not None:
            return principal
        principal = self._check(header)
        if len(self._principals) >= MAX_REMEMBERED:
            self._principals.clear()
        self._principals[header] = principal
        return principal

    def _check(self, header: str) -> Principal:
        if not header:
            raise Unauthenticated("missing authorization metadata: send 'authorization: Bearer <api key>'")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key:
            raise Unauthenticated("authorization must be 'Bearer <api key>'")
        key_id, secret = self.split(key.strip())
        entry = self._keys.get(key_id)
        if entry is None or not hmac.compare_digest(entry[1], hash_secret(secret)):
            raise Unauthenticated("unknown or revoked API key")
        return Principal(entry[0], key_id, entry[2])
