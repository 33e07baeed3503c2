"""Bootstrap peers: add them to the address book on start and dial them.

Each entry is a multiaddr ending in ``/p2p/<peer id>``
(``/dns4/node-b/tcp/4001/p2p/12D3KooW...``). A peer already in the address book gets the
address merged in. Dials retry with backoff (the other node may still be starting, as
with docker compose) until connected or the attempts run out; once connected, the
engine's own reconnection takes over.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from engine.backoff import Backoff
from engine.crypto.identity import PeerId
from engine.errors import GlueberryError, InvalidMultiaddrError, PeerExistsError

__all__ = ["bootstrap", "split_p2p_addr"]

log = logging.getLogger("glueberry.api.bootstrap")


def split_p2p_addr(text: str) -> tuple[PeerId, str]:
    """Split ``<addr>/p2p/<peer id>`` into the peer id and the transport address.

    Raises:
        InvalidMultiaddrError: no ``/p2p/`` component.
        InvalidPeerIdError: the peer id is invalid.
    """
    head, sep, tail = text.strip().rpartition("/p2p/")
    if not sep or not head or not tail or "/" in tail:
        raise InvalidMultiaddrError(
            "bootstrap peers need a /p2p/<peer id> suffix", details={"addr": text}
        )
    return PeerId.from_string(tail), head


async def _add(node: Any, peer_id: PeerId, addr: str) -> None:
    try:
        await node.add_peer(peer_id, [addr])
    except PeerExistsError:
        record = await node.get_peer(peer_id)
        addrs = [str(a) for a in record.addrs]
        if addr not in addrs:
            await node.update_peer(peer_id, addrs=[addr, *addrs])


async def bootstrap(
    node: Any,
    entries: list[str],
    *,
    attempts: int = 30,
    base_delay: float = 0.5,
    max_delay: float = 10.0,
) -> None:
    """Add every bootstrap peer and dial the ones not yet connected.

    Args:
        node: the running engine node.
        entries: multiaddrs with a ``/p2p/`` suffix.
        attempts: dial attempts per peer before giving up.
        base_delay: first retry delay (seconds).
        max_delay: retry delay cap (seconds).
    """
    peers: list[PeerId] = []
    for entry in entries:
        try:
            peer_id, addr = split_p2p_addr(entry)
            if peer_id == node.peer_id:
                continue
            await _add(node, peer_id, addr)
        except GlueberryError as exc:
            log.warning("bootstrap peer %r skipped: %s", entry, exc)
            continue
        peers.append(peer_id)
    await asyncio.gather(
        *(_dial(node, p, Backoff(base_delay, max_delay, attempts, 0.2)) for p in peers)
    )


async def _dial(node: Any, peer_id: PeerId, backoff: Backoff) -> None:
    while True:
        if peer_id in set(node.connected_peers()):
            return
        try:
            await node.connect(peer_id)
        except GlueberryError as exc:
            delay = backoff.next_delay()
            if delay is None:
                log.warning("bootstrap peer %s unreachable: %s", peer_id, exc.code)
                return
            await asyncio.sleep(delay)
        else:
            log.info("bootstrap peer %s connected", peer_id)
            return
