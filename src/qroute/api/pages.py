"""Page tokens for List RPCs: the last id of the previous page, opaque to clients."""

from __future__ import annotations

import base64

from qroute.errors import InvalidArgument

DEFAULT_PAGE = 100
MAX_PAGE = 1000


def page(items: list, page_size: int, page_token: str, key=lambda item: item) -> tuple[list, str]:
    """One page of ``items`` (sorted by ``key``) after the token; and the next token."""
    if page_size < 0:
        raise InvalidArgument.field("page_size", "must be >= 0")
    size = min(page_size or DEFAULT_PAGE, MAX_PAGE)
    after = ""
    if page_token:
        try:
            after = base64.b64decode(page_token.encode(), altchars=b"-_", validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            raise InvalidArgument.field("page_token", "is not a token this server gave") from None
    ordered = sorted(items, key=key)
    if after:
        ordered = [item for item in ordered if key(item) > after]
    chunk = ordered[:size]
    token = base64.urlsafe_b64encode(key(chunk[-1]).encode()).decode() if len(ordered) > size else ""
    return chunk, token
