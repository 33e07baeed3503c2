"""Per-peer state on a node is bounded: peer ids are free to mint (one key pair each)."""

from __future__ import annotations

from pathlib import Path

import pytest
from node_kit import Cluster, connect_pair, wait_state

from engine.connection_state import ConnectionState

VISITORS = 20


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason=(
        "reported, not fixed here (engine/connection_manager.py is owned by another "
        "engineer): ConnectionManager keeps a _Peer for every peer id that ever connected; "
        "only forget() deletes one"
    ),
)
async def test_peers_that_connected_once_and_left_are_not_kept_forever(tmp_path: Path) -> None:
    cluster = Cluster("memory", tmp_path)
    try:
        victim = await cluster.node()
        for _ in range(VISITORS):
            visitor = await cluster.node()  # a fresh identity each time, as an attacker's
            await connect_pair(visitor, victim)
            await visitor.stop()
            await wait_state(victim, visitor.peer_id, ConnectionState.DISCONNECTED)
        # Unknown (never in the address book), disconnected peers need no state.
        tracked = victim._cm.known_peers()
        assert len(tracked) < VISITORS
    finally:
        await cluster.close()
