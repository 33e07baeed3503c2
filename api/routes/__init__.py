"""One ``APIRouter`` per resource; :data:`ROUTERS` lists them in mounting order."""

from api.routes import (
    blacklist,
    connections,
    events,
    handshake,
    health,
    messages,
    node,
    peers,
    stats,
    tickets,
)

ROUTERS = (
    health.router,
    node.router,
    peers.router,
    connections.router,
    blacklist.router,
    stats.router,
    messages.router,
    events.router,
    handshake.router,
    tickets.router,
)

__all__ = ["ROUTERS"]
