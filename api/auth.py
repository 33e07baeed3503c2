"""Authentication and authorization: API keys, scopes, single-use tickets, origins.

- Every route except ``/healthz`` and ``/readyz`` needs ``Authorization: Bearer <key>``.
  Keys are verified by the persistence layer's API-key repository (hashed at rest,
  compared in constant time); this module only asks it and turns the answer into a
  :class:`Principal`.
- Scopes are least-privilege: ``monitor`` (read and watch), ``peers:write``,
  ``streams:send``, ``admin`` (implies every other scope). A watch never needs a write
  scope.
- Browsers cannot set headers on WebSocket/EventSource requests, so they first obtain a
  short-lived, single-use ticket with ``POST /v1/tickets`` (bearer key) and pass it as
  ``?ticket=``. Tickets are stored hashed; in Redis (GETDEL, atomic) when Redis is
  configured so any replica can redeem them, otherwise in memory.
- :func:`origin_allowed` checks the ``Origin`` header of browser channels against the
  configured allow-list.
"""

from __future__ import annotations

import enum
import hashlib
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from api.errors import ApiError
from api.ratelimit import REDIS_TIMEOUT

__all__ = [
    "ApiKeyVerifier",
    "MemoryTicketStore",
    "Principal",
    "RedisTicketStore",
    "Scope",
    "TicketStore",
    "bearer_token",
    "forbidden",
    "origin_allowed",
    "principal_from_record",
    "unauthorized",
]

TICKET_PREFIX = "gbt_"


class Scope(enum.StrEnum):
    """API key scopes."""

    MONITOR = "monitor"
    PEERS_WRITE = "peers:write"
    STREAMS_SEND = "streams:send"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling.

    Attributes:
        key_id: id of the API key (also the id a ticket was issued from).
        name: the key's name.
        scopes: granted scopes.
        via: ``"key"`` or ``"ticket"``.
    """

    key_id: str
    name: str
    scopes: frozenset[Scope]
    via: str = "key"

    def allows(self, scope: Scope) -> bool:
        """Whether this principal holds ``scope`` (``admin`` holds every scope)."""
        return Scope.ADMIN in self.scopes or scope in self.scopes

    @property
    def rate_key(self) -> str:
        """Bucket name for this caller's rate limit."""
        return f"key:{self.key_id}"


class ApiKeyVerifier(Protocol):
    """What the gateway needs from the API-key repository."""

    async def verify(self, key: str) -> Any | None:
        """Return the key's record (``key_id``, ``name``, ``scopes``) or ``None``."""
        ...


def _parse_scopes(raw: Iterable[str] | str) -> frozenset[Scope]:
    items = raw.replace(",", " ").split() if isinstance(raw, str) else raw
    out: set[Scope] = set()
    for item in items:
        try:
            out.add(Scope(str(item)))
        except ValueError:
            continue  # a scope this gateway does not know grants nothing
    return frozenset(out)


def principal_from_record(record: Any) -> Principal:
    """Turn an API-key repository record into a :class:`Principal`."""
    key_id = getattr(record, "key_id", None) or record.id
    return Principal(
        key_id=str(key_id),
        name=str(getattr(record, "name", "") or ""),
        scopes=_parse_scopes(record.scopes),
    )


def unauthorized(message: str = "missing or invalid API key") -> ApiError:
    """A 401 error with the ``WWW-Authenticate`` challenge."""
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def forbidden(scope: Scope) -> ApiError:
    """A 403 error naming the missing scope."""
    return ApiError(
        403,
        "forbidden",
        f"this API key lacks the {scope.value!r} scope",
        details={"required_scope": scope.value},
    )


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or ``None``.

    Raises:
        ApiError: 401 when the header is present but not a bearer token.
    """
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthorized("the Authorization header must be 'Bearer <API key>'")
    return token


def origin_allowed(origin: str | None, allowed: Iterable[str]) -> bool:
    """Whether a browser ``Origin`` may open a channel.

    Args:
        origin: the request's ``Origin`` header (``None`` for non-browser clients).
        allowed: configured origins; ``"*"`` allows any.

    Returns:
        True for requests without an Origin (curl, backends) and for listed origins.
    """
    if origin is None:
        return True
    allowed_set = set(allowed)
    return "*" in allowed_set or origin.rstrip("/") in {a.rstrip("/") for a in allowed_set}


def _ticket_digest(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


def _new_ticket() -> str:
    return TICKET_PREFIX + secrets.token_urlsafe(24)


class TicketStore(Protocol):
    """Single-use, short-lived tickets."""

    async def issue(self, principal: Principal, ttl: float) -> tuple[str, float]:
        """Create a ticket for ``principal``; return it and its expiry (epoch seconds)."""
        ...

    async def redeem(self, ticket: str) -> Principal | None:
        """Consume a ticket; ``None`` when unknown, used or expired."""
        ...


class MemoryTicketStore:
    """Tickets in this process (redeemable only on the replica that issued them).

    Args:
        max_tickets: outstanding tickets kept at most; the oldest are dropped.
        clock: wall clock in seconds (tests pass a fake one).
        max_per_key: outstanding tickets one API key may hold; its own oldest are
            dropped beyond it, so one key holder cannot flush the tickets of others out
            of the shared ``max_tickets``.
    """

    def __init__(
        self, max_tickets: int = 10_000, clock: Any = time.time, *, max_per_key: int = 100
    ) -> None:
        self._max = max_tickets
        self._max_per_key = max(1, max_per_key)
        self._clock = clock
        self._tickets: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._by_key: dict[str, OrderedDict[str, None]] = {}

    async def issue(self, principal: Principal, ttl: float) -> tuple[str, float]:
        """Create a ticket."""
        now = float(self._clock())
        self._purge(now)
        ticket = _new_ticket()
        digest = _ticket_digest(ticket)
        expires_at = now + ttl
        self._tickets[digest] = (replace(principal, via="ticket"), expires_at)
        mine = self._by_key.setdefault(principal.key_id, OrderedDict())
        mine[digest] = None
        while len(mine) > self._max_per_key:
            self._drop(next(iter(mine)))
        while len(self._tickets) > self._max:
            self._drop(next(iter(self._tickets)))
        return ticket, expires_at

    async def redeem(self, ticket: str) -> Principal | None:
        """Consume a ticket (single use)."""
        entry = self._drop(_ticket_digest(ticket))
        if entry is None:
            return None
        principal, expires_at = entry
        if float(self._clock()) >= expires_at:
            return None
        return principal

    def _drop(self, digest: str) -> tuple[Principal, float] | None:
        entry = self._tickets.pop(digest, None)
        if entry is not None:
            mine = self._by_key.get(entry[0].key_id)
            if mine is not None:
                mine.pop(digest, None)
                if not mine:
                    del self._by_key[entry[0].key_id]
        return entry

    def _purge(self, now: float) -> None:
        # Tickets are inserted in expiry order (one TTL per store in practice), so expired
        # ones sit at the front.
        while self._tickets:
            digest, (_, expires_at) = next(iter(self._tickets.items()))
            if expires_at > now:
                break
            self._drop(digest)


class RedisTicketStore:
    """Tickets in Redis (``SET EX`` / ``GETDEL``): any replica can redeem one, once."""

    def __init__(self, url: str, *, prefix: str = "glueberry:ticket:") -> None:
        import redis.asyncio as aioredis

        # Bounded waits: an unreachable (blackholed) Redis must not hang every request
        # for the OS connect timeout.
        self._redis: Any = aioredis.from_url(
            url, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT
        )
        self._prefix = prefix

    async def issue(self, principal: Principal, ttl: float) -> tuple[str, float]:
        """Create a ticket."""
        ticket = _new_ticket()
        payload = json.dumps(
            {
                "key_id": principal.key_id,
                "name": principal.name,
                "scopes": sorted(s.value for s in principal.scopes),
            }
        )
        await self._redis.set(
            self._prefix + _ticket_digest(ticket), payload, px=max(1, int(ttl * 1000))
        )
        return ticket, time.time() + ttl

    async def redeem(self, ticket: str) -> Principal | None:
        """Consume a ticket (single use, atomic across replicas)."""
        raw = await self._redis.getdel(self._prefix + _ticket_digest(ticket))
        if raw is None:
            return None
        data = json.loads(raw)
        return Principal(
            key_id=data["key_id"],
            name=data["name"],
            scopes=_parse_scopes(data["scopes"]),
            via="ticket",
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()
