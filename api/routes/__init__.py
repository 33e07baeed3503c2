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
    ui,
    ws_events,
    ws_handshake,
    ws_messages,
    ws_streams,
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
    ws_streams.router,
    ws_messages.router,
    ws_events.router,
    ws_handshake.router,
    ui.router,
)

__all__ = ["ROUTERS"]
