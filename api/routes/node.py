"""``/v1/node``: the local node."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import Monitor, NodeDep
from api.errors import AUTH_ERRORS, error_responses
from api.schemas import NodeInfo
from api.views import b64

__all__ = ["router"]

router = APIRouter(prefix="/v1/node", tags=["node"], responses=error_responses(*AUTH_ERRORS))


@router.get("", summary="Node identity, addresses, version and capabilities")
async def get_node_info(
    _: Monitor,
    node: NodeDep,
) -> NodeInfo:
    """The local node: peer id, public key, listening multiaddrs, version, capabilities."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package_version = version("glueberry")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        package_version = "0.0.0"
    mode = getattr(getattr(node, "config", None), "handshake_mode", "auto")
    return NodeInfo(
        peer_id=str(node.peer_id),
        public_key=b64(node.public_key),
        addrs=[str(a) for a in node.listen_addrs()] if node.running else [],
        version=package_version,
        capabilities=list(node.capabilities),
        running=bool(node.running),
        handshake_mode=str(getattr(mode, "value", mode)),
    )
