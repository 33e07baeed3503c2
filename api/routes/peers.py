"""``/v1/peers``: the address book, connections to one peer, its stats and its ban."""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Response, status

from api.deps import Gateway, Limit, Monitor, NodeDep, Offset, PeerIdPath, PeersWrite
from api.errors import AUTH_ERRORS, error_responses
from api.schemas import (
    BanOptions,
    BanResult,
    ConnectionStatus,
    ConnectRequest,
    OperationResult,
    Page,
    PeerCreate,
    PeerPublic,
    PeerResult,
    PeerStatsPublic,
    PeerUpdate,
)
from api.views import ban_public, connection_status, jsonable, peer_public
from engine.crypto.identity import PeerId
from engine.errors import GlueberryError

__all__ = ["router"]

log = logging.getLogger("glueberry.api.peers")

router = APIRouter(prefix="/v1/peers", tags=["peers"], responses=error_responses(*AUTH_ERRORS))


@router.get("", summary="List the address book")
async def list_peers(
    _: Monitor,
    node: NodeDep,
    offset: Offset = 0,
    limit: Limit = 100,
) -> Page[PeerPublic]:
    """One page of address-book entries with their live connection status."""
    records, total = await node.list_peers(offset=offset, limit=limit)
    return Page[PeerPublic](
        items=[peer_public(node, r) for r in records], total=total, offset=offset, limit=limit
    )


async def _connect_in_background(node: Any, peer_id: PeerId, dial_timeout: float | None) -> None:
    try:
        await node.connect(peer_id, timeout=dial_timeout)
    except GlueberryError as exc:
        log.info("background connect to %s failed: %s", peer_id, exc.code)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Add a peer to the address book",
    responses=error_responses(409, 422),
)
async def create_peer(
    _: PeersWrite,
    body: PeerCreate,
    node: NodeDep,
    gateway: Gateway,
) -> PeerResult:
    """Add a peer (persisted before the answer); optionally start connecting to it."""
    peer_id = PeerId.from_string(body.peer_id)
    record = await node.add_peer(peer_id, list(body.addrs), body.metadata)
    if body.connect:
        gateway.spawn(_connect_in_background(node, peer_id, None), f"connect-{peer_id}")
    return PeerResult(peer=peer_public(node, record), persisted=gateway.persistent)


@router.get("/{peer_id}", summary="Get one peer", responses=error_responses(404, 422))
async def get_peer(
    _: Monitor,
    peer_id: PeerIdPath,
    node: NodeDep,
) -> PeerPublic:
    """An address-book entry with its connection state, reconnect attempts and next retry."""
    return peer_public(node, await node.get_peer(peer_id))


@router.patch("/{peer_id}", summary="Update a peer", responses=error_responses(404, 422))
async def update_peer(
    _: PeersWrite,
    peer_id: PeerIdPath,
    body: PeerUpdate,
    node: NodeDep,
    gateway: Gateway,
) -> PeerResult:
    """Replace a peer's addresses and/or metadata (persisted before the answer)."""
    addrs = None if body.addrs is None else list(body.addrs)
    record = await node.update_peer(peer_id, addrs=addrs, metadata=body.metadata)
    return PeerResult(peer=peer_public(node, record), persisted=gateway.persistent)


@router.delete("/{peer_id}", summary="Remove a peer", responses=error_responses(404, 422))
async def delete_peer(
    _: PeersWrite,
    peer_id: PeerIdPath,
    node: NodeDep,
    gateway: Gateway,
) -> OperationResult:
    """Remove a peer from the address book (persisted before the answer)."""
    await node.remove_peer(peer_id)
    return OperationResult(persisted=gateway.persistent)


@router.get(
    "/{peer_id}/connection",
    summary="Connection state of a peer",
    responses=error_responses(422),
)
async def get_connection(
    _: Monitor,
    peer_id: PeerIdPath,
    node: NodeDep,
) -> ConnectionStatus:
    """State, reconnect attempt count, next retry time, direction, cooldown."""
    return connection_status(node, peer_id)


@router.post(
    "/{peer_id}/connect",
    summary="Connect to a peer",
    responses={
        202: {"model": ConnectionStatus, "description": "Connecting in the background."},
        **error_responses(403, 404, 409, 422, 502, 504),
    },
)
async def connect_peer(
    _: PeersWrite,
    peer_id: PeerIdPath,
    node: NodeDep,
    gateway: Gateway,
    response: Response,
    body: Annotated[ConnectRequest | None, Body()] = None,
) -> ConnectionStatus:
    """Dial the peer and run the handshake; with ``wait`` answer once Established."""
    request = body or ConnectRequest()
    if request.wait:
        await node.connect(peer_id, timeout=request.timeout)
    else:
        gateway.spawn(_connect_in_background(node, peer_id, request.timeout), f"connect-{peer_id}")
        response.status_code = status.HTTP_202_ACCEPTED
    return connection_status(node, peer_id)


@router.post(
    "/{peer_id}/disconnect",
    summary="Disconnect from a peer",
    responses=error_responses(422),
)
async def disconnect_peer(
    _: PeersWrite,
    peer_id: PeerIdPath,
    node: NodeDep,
) -> ConnectionStatus:
    """Close the connection (no automatic reconnection follows)."""
    await node.disconnect(peer_id)
    return connection_status(node, peer_id)


@router.delete(
    "/{peer_id}/reconnection",
    summary="Cancel reconnection attempts",
    responses=error_responses(422),
)
async def cancel_reconnection(
    _: PeersWrite,
    peer_id: PeerIdPath,
    node: NodeDep,
) -> ConnectionStatus:
    """Stop the backoff loop of a peer being reconnected."""
    node.cancel_reconnection(peer_id)
    return connection_status(node, peer_id)


@router.get("/{peer_id}/stats", summary="Statistics of a peer", responses=error_responses(404))
async def get_peer_stats(
    _: Monitor,
    peer_id: PeerIdPath,
    node: NodeDep,
) -> PeerStatsPublic:
    """Per-stream message and byte counters, connects, ping RTT, decryption errors, drops."""
    stats = node.peer_stats(peer_id)
    if stats is None:
        from engine.errors import PeerNotFoundError

        raise PeerNotFoundError("no statistics for this peer", details={"peer_id": str(peer_id)})
    return PeerStatsPublic(peer_id=str(peer_id), stats=jsonable(stats))


@router.post(
    "/{peer_id}/blacklist",
    status_code=status.HTTP_201_CREATED,
    summary="Blacklist a peer",
    responses=error_responses(422),
)
async def blacklist_peer(
    _: PeersWrite,
    peer_id: PeerIdPath,
    node: NodeDep,
    gateway: Gateway,
    body: Annotated[BanOptions | None, Body()] = None,
) -> BanResult:
    """Refuse the peer in both directions and drop it if connected (persisted)."""
    ban = body or BanOptions()
    expires_at = ban.expiry(time.time())
    record = await node.blacklist_peer(peer_id, reason=ban.reason, expires_at=expires_at)
    return BanResult(ban=ban_public(record), persisted=gateway.persistent)
