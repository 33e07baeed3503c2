"""``/v1/tickets``: single-use tickets for browsers' WebSocket / EventSource requests."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, status

from api.auth import Principal
from api.deps import Authenticated, Gateway
from api.errors import AUTH_ERRORS, ApiError, error_responses
from api.schemas import TicketCreate, TicketPublic

__all__ = ["router"]

router = APIRouter(prefix="/v1/tickets", tags=["auth"], responses=error_responses(*AUTH_ERRORS))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a single-use ticket",
    responses=error_responses(422),
)
async def create_ticket(
    principal: Authenticated,
    gateway: Gateway,
    body: Annotated[TicketCreate | None, Body()] = None,
) -> TicketPublic:
    """A short-lived ticket to pass as ``?ticket=`` where a browser cannot send headers.

    The ticket is valid once, within ``ticket_ttl`` seconds, with the key's scopes or
    the narrower set asked for.
    """
    scopes = principal.scopes
    if body is not None and body.scopes is not None:
        wanted = frozenset(body.scopes)
        missing = sorted(s.value for s in wanted if not principal.allows(s))
        if missing:
            raise ApiError(
                403, "forbidden", "cannot grant scopes the key lacks", details={"scopes": missing}
            )
        scopes = wanted
    narrowed = Principal(principal.key_id, principal.name, scopes, via="ticket")
    ticket, expires_at = await gateway.tickets.issue(narrowed, gateway.settings.ticket_ttl)
    return TicketPublic(ticket=ticket, expires_at=expires_at, scopes=sorted(scopes))
