"""``/v1/stats``: statistics of every tracked peer."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import Monitor, NodeDep
from api.errors import AUTH_ERRORS, error_responses
from api.schemas import PeerStatsPublic, StatsPublic
from api.views import jsonable

__all__ = ["router"]

router = APIRouter(prefix="/v1/stats", tags=["stats"], responses=error_responses(*AUTH_ERRORS))


@router.get("", summary="Statistics of all peers")
async def get_all_stats(
    _: Monitor,
    node: NodeDep,
) -> StatsPublic:
    """Per-peer, per-stream counters for every tracked peer."""
    peers = [
        PeerStatsPublic(peer_id=str(peer_id), stats=jsonable(stats))
        for peer_id, stats in node.all_stats().items()
    ]
    return StatsPublic(peers=peers, total=len(peers))
