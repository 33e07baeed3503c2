"""``/v1/blacklist``: bans by peer id or CIDR network, with reason and optional expiry."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path, status

from api.deps import Gateway, Limit, Monitor, NodeDep, Offset, PeersWrite
from api.errors import AUTH_ERRORS, error_responses
from api.schemas import BanCreate, BanPublic, BanResult, OperationResult, Page
from api.views import ban_public
from engine.crypto.identity import PeerId
from engine.errors import InvalidPeerIdError

__all__ = ["router"]

router = APIRouter(
    prefix="/v1/blacklist", tags=["blacklist"], responses=error_responses(*AUTH_ERRORS)
)


@router.get("", summary="List bans")
async def list_bans(
    _: Monitor,
    node: NodeDep,
    offset: Offset = 0,
    limit: Limit = 100,
) -> Page[BanPublic]:
    """Active bans (peer ids and CIDR networks)."""
    records = await node.list_blacklist()
    items = [ban_public(r) for r in records]
    return Page[BanPublic](
        items=items[offset : offset + limit], total=len(items), offset=offset, limit=limit
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Ban a peer id or a CIDR network",
    responses=error_responses(422),
)
async def create_ban(
    _: PeersWrite,
    body: BanCreate,
    node: NodeDep,
    gateway: Gateway,
) -> BanResult:
    """Refuse the peer / addresses in both directions and drop matching connections.

    The target is a peer id (``12D3KooW...``) or an IP address / CIDR network
    (``10.0.0.0/8``, ``2001:db8::/32``). The ban is persisted before the answer.
    """
    expires_at = body.expiry(time.time())
    try:
        peer_id = PeerId.from_string(body.target)
    except InvalidPeerIdError:
        record = await node.blacklist_cidr(body.target, reason=body.reason, expires_at=expires_at)
    else:
        record = await node.blacklist_peer(peer_id, reason=body.reason, expires_at=expires_at)
    return BanResult(ban=ban_public(record), persisted=gateway.persistent)


@router.delete(
    "/{target:path}",
    summary="Lift a ban",
    responses=error_responses(404, 422),
)
async def delete_ban(
    _: PeersWrite,
    target: Annotated[
        str,
        Path(description="Peer id or CIDR (the slash may stay as is)", examples=["10.0.0.0/8"]),
    ],
    node: NodeDep,
    gateway: Gateway,
) -> OperationResult:
    """Remove a ban by its target (persisted before the answer)."""
    await node.unblacklist(target)
    return OperationResult(persisted=gateway.persistent)
