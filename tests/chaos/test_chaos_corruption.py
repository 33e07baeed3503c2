"""Scenario 4: a flipped bit inside Noise (connection dies, node recovers) and inside a
Glueberry frame (that one message is dropped and reported, the stream stays open)."""

from __future__ import annotations

import pytest
from node_kit import connect_pair

from engine.connection_state import ConnectionState
from engine.crypto.identity import PeerId
from engine.errors import DecryptionError

from .conftest import Harness
from .faulty_proxy import Way
from .kit import payload

S = ConnectionState

# Noise frames before the transport phase, per direction: XX messages 1 and 3 go up
# (initiator = dialer = proxy client), message 2 goes down.
FIRST_TRANSPORT_FRAME = {Way.UP: 2, Way.DOWN: 1}


class Reports:
    """Collects on_decryption_error calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[PeerId, str, DecryptionError]] = []

    def __call__(self, peer: PeerId, stream: str, error: DecryptionError) -> None:
        self.calls.append((peer, stream, error))


@pytest.mark.parametrize("way", [Way.UP, Way.DOWN], ids=["a_to_b", "b_to_a"])
async def test_bit_flip_in_noise_closes_the_connection_and_the_node_reconnects(
    chaos: Harness, way: Way
) -> None:
    reports = Reports()
    pair = await chaos.pair(seed=7, on_decryption_error=reports)
    a, b, proxy = pair.a, pair.b, pair.proxy
    sender, receiver = (a, b) if way is Way.UP else (b, a)
    a_log = chaos.events(a, b.peer_id)
    b_log = chaos.events(b, a.peer_id)
    inbox = chaos.inbox(receiver, "messages")
    for i in range(10):
        await sender.send(receiver.peer_id, "messages", payload(i))
    await inbox.wait_until(lambda: len(inbox.items) == 10, 5)

    proxy.faults.arm_corruption(way, min_frame=FIRST_TRANSPORT_FRAME[way])
    for i in range(10, 20):
        await sender.send(receiver.peer_id, "messages", payload(i))
    await proxy.wait_until(lambda: proxy.faults.corruptions == 1, 5)

    # The receiver's Noise layer rejects the frame and closes the connection: a
    # connection failure (not a crash), seen by both sides; the dialer reconnects.
    receiver_log, receiver_gone = (
        (b_log, S.DISCONNECTED) if way is Way.UP else (a_log, S.RECONNECTING)
    )
    gone = await receiver_log.wait_state(receiver_gone, 5)
    assert gone.previous_state is S.ESTABLISHED
    assert gone.error_code == "connection_closed"
    assert "DecryptionError" in (gone.error_message or "")
    await a_log.wait_state(S.RECONNECTING, 5)
    await a_log.wait_state(S.ESTABLISHED, 10, after=len(a_log.events) - 1)
    await pair.established(10)
    assert proxy.faults.links_opened >= 2

    # Whatever arrived before the cut is intact and in order; nothing wrong was delivered.
    seqs = inbox.seqs
    assert seqs == list(range(len(seqs)))

    before = len(inbox.items)
    for i in range(100, 150):
        await sender.send(receiver.peer_id, "messages", payload(i))
    await inbox.wait_until(lambda: len(inbox.items) == before + 50, 10)
    assert inbox.seqs[before:] == list(range(100, 150))
    # A Noise failure is a transport failure: no Glueberry frame failed to decrypt.
    assert reports.calls == []
    for node, peer in ((a, b), (b, a)):
        stats = node.peer_stats(peer.peer_id)
        assert stats is not None
        assert stats.decryption_errors == 0


async def test_corrupted_glueberry_frame_is_dropped_and_reported_stream_stays_open(
    chaos: Harness,
) -> None:
    reports = Reports()
    a, host = await chaos.stream_faulty_node()
    b = await chaos.node(on_decryption_error=reports)
    await connect_pair(a, b)
    a_log = chaos.events(a, b.peer_id)
    inbox = chaos.inbox(b, "messages")
    for i in range(10):
        await a.send(b.peer_id, "messages", payload(i))
    await inbox.wait_until(lambda: len(inbox.items) == 10, 5)
    streams_opened = host.faults.links_opened
    assert streams_opened == 1

    host.faults.arm_corruption(Way.UP)  # the payload of the very next frame a writes
    for i in range(10, 30):
        await a.send(b.peer_id, "messages", payload(i))
    await inbox.wait_until(lambda: len(inbox.items) == 29, 5)

    assert host.faults.corruptions == 1
    assert inbox.seqs == [*range(10), *range(11, 30)]  # exactly message 10 is gone
    assert len(reports.calls) == 1
    peer, stream, error = reports.calls[0]
    assert (peer, stream) == (a.peer_id, "messages")
    assert isinstance(error, DecryptionError)
    stats = b.peer_stats(a.peer_id)
    assert stats is not None
    assert stats.decryption_errors == 1
    assert stats.dropped.get("decryption_failed") == 1
    # Same stream, same connection: nothing was reset or reconnected.
    assert host.faults.links_opened == streams_opened
    assert a_log.events == []
    assert a.connection_state(b.peer_id) is S.ESTABLISHED
    await a.send(b.peer_id, "messages", payload(30))
    await inbox.wait_until(lambda: len(inbox.items) == 30, 5)
    assert inbox.seqs[-1] == 30
