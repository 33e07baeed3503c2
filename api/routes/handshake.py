"""App-mode handshake: send a handshake message, prepare streams, finalize.

Incoming handshake messages reach the application over the handshake WebSocket channel
(gateway part 2); these REST calls are the actions the application answers with.
"""

from __future__ import annotations

import base64
import binascii

from fastapi import APIRouter

from api.deps import NodeDep, PeerIdPath, PeersWrite
from api.errors import AUTH_ERRORS, error_responses
from api.schemas import HandshakeMessageCreate, HandshakePrepare, OperationResult, SendResult
from engine.errors import InvalidPublicKeyError

__all__ = ["router"]

router = APIRouter(
    prefix="/v1/peers/{peer_id}/handshake",
    tags=["handshake"],
    responses=error_responses(*AUTH_ERRORS, 409, 422),
)


@router.post("/messages", summary="Send a handshake message", responses=error_responses(502))
async def send_handshake_message(
    _: PeersWrite,
    peer_id: PeerIdPath,
    body: HandshakeMessageCreate,
    node: NodeDep,
) -> SendResult:
    """Send one message on the peer's handshake stream (unencrypted, app mode)."""
    data = body.payload()
    await node.send_handshake_message(peer_id, data)
    return SendResult(bytes=len(data))


@router.post("/prepare", summary="Prepare encrypted streams")
async def prepare_streams(
    _: PeersWrite,
    peer_id: PeerIdPath,
    body: HandshakePrepare,
    node: NodeDep,
) -> OperationResult:
    """Derive the stream key from the peer's public key and get ready to receive."""
    if body.public_key is None:
        public_key = peer_id.public_key
    else:
        try:
            public_key = base64.b64decode(body.public_key, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidPublicKeyError("public_key is not valid base64") from None
    await node.prepare_streams(peer_id, public_key, list(body.streams))
    return OperationResult()


@router.post("/finalize", summary="Finalize the handshake")
async def finalize_handshake(
    _: PeersWrite,
    peer_id: PeerIdPath,
    node: NodeDep,
) -> OperationResult:
    """Activate sending and move the peer to Established."""
    await node.finalize_handshake(peer_id)
    return OperationResult()
