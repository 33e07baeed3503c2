"""``/v1/connections``: peers with a live connection."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import Monitor, NodeDep
from api.errors import AUTH_ERRORS, error_responses
from api.schemas import ConnectionList
from api.views import connection_status

__all__ = ["router"]

router = APIRouter(
    prefix="/v1/connections", tags=["connections"], responses=error_responses(*AUTH_ERRORS)
)


@router.get("", summary="List connected peers")
async def list_connections(
    _: Monitor,
    node: NodeDep,
) -> ConnectionList:
    """Every connected peer with its state, direction and connection time."""
    items = [
        {"peer_id": str(peer_id), **connection_status(node, peer_id).model_dump()}
        for peer_id in node.connected_peers()
    ]
    return ConnectionList(items=items, total=len(items))
