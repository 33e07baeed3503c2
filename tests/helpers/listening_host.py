"""A host of our stack listening on 127.0.0.1 in the test's process, with its recorder.

Used by the transport acceptance tests (scale, churn, liveness) and the interop tests,
whose peers in other processes dial it at :func:`p2p_addr`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from multiaddr import Multiaddr

from engine.config import Config
from engine.crypto.identity import Identity
from engine.net.host import Host
from helpers.notifee import ConnectionRecorder

__all__ = ["listening_host", "many_connections_config", "p2p_addr"]


def many_connections_config() -> Config:
    """Limits raised past the load of a test that opens thousands of connections from
    127.0.0.1 (every one from the same IP, many at once)."""
    return Config(
        max_connections=10_000,
        max_pending_connections=1_000,
        max_connections_per_ip=10_000,
        connection_rate_per_ip=100_000.0,
    )


@contextlib.asynccontextmanager
async def listening_host(
    config: Config, *, close_timeout: float = 10.0
) -> AsyncIterator[tuple[Host, ConnectionRecorder]]:
    """A new host (fresh identity) with a :class:`ConnectionRecorder`, listening on
    ``/ip4/127.0.0.1/tcp/0``; closed on exit, within ``close_timeout`` seconds."""
    host = Host(Identity.generate(), config)
    recorder = ConnectionRecorder()
    host.add_notifee(recorder)
    await host.listen([Multiaddr("/ip4/127.0.0.1/tcp/0")])
    try:
        yield host, recorder
    finally:
        async with asyncio.timeout(close_timeout):
            await host.close()


def p2p_addr(host: Host) -> str:
    """The host's first listen address with ``/p2p/<peer id>``: what a peer dials."""
    return f"{host.listen_addrs()[0]}/p2p/{host.peer_id}"
