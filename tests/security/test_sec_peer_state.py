"""Per-peer state on a node is bounded: peer ids are free to mint (one key pair each)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from node_kit import Cluster, connect_pair, wait_state

from engine.connection_state import ConnectionState
from engine.errors import GlueberryError

VISITORS = 20


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


async def test_one_peer_cannot_park_a_partial_frame_on_every_stream(tmp_path: Path) -> None:
    import gc
    import tracemalloc

    from engine.handshake import stream_protocol
    from engine.varint import encode_uvarint

    cluster = Cluster("memory", tmp_path)
    tracemalloc.start()
    try:
        victim = await cluster.node(max_message_size=256 * 1024)
        attacker = await cluster.node()
        await connect_pair(attacker, victim)
        p_len = 256 * 1024  # announce the largest message, send all but the last bytes
        header = encode_uvarint(len(encode_uvarint(p_len)) + p_len) + encode_uvarint(p_len)
        streams = []
        for _ in range(16):
            stream = await attacker._host.new_stream(
                victim.peer_id, [stream_protocol("messages")], timeout=5
            )
            streams.append(stream)
            try:
                await stream.write(header + bytes(p_len - 1))
            except GlueberryError:
                continue  # refused: that is the bound we want
        # Let the victim's readers run (scheduling passes, no wall-clock wait).
        for _ in range(50):
            await asyncio.sleep(0)
        gc.collect()
        # Only what the victim's frame decoders hold counts (not the attacker's writes).
        held = sum(
            stat.size
            for stat in tracemalloc.take_snapshot()
            .filter_traces([tracemalloc.Filter(True, "*engine/framing.py")])
            .statistics("filename")
        )
        # 16 parked frames would be 4 MiB; a bounded node keeps a few.
        assert held < 4 * p_len, f"{held / 2**20:.1f} MiB held for one peer"
    finally:
        tracemalloc.stop()
        await cluster.close()
