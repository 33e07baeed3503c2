"""Interoperability: py-libp2p and js-libp2p peers against our libp2p stack.

For each implementation and each direction (they dial us, we dial them), over one
connection that can only be Noise + yamux (both peers are configured with exactly those):
- each side sees the other's identify data (agent version, protocols);
- streams on a custom protocol opened by *each* side exchange 1,000 messages of 1 KiB and
  10 messages of 1 MiB each way, checked by count, size and SHA-256 on both ends;
- ping works both ways.
Dialing one of them under another peer id fails with ``PeerIdMismatchError``, and both
answer our yamux keep-alive pings (an idle healthy peer is never dropped); when both
sides dial each other at once, both dials succeed and streams work both ways.

The js-libp2p peer needs its npm packages: ``npm ci --prefix tests/interop``.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers.exchange import EXCHANGE_PROTOCOL, run_exchange
from helpers.glueberry_peer import split_p2p_addr
from helpers.listening_host import listening_host, p2p_addr
from helpers.notifee import ConnectionRecorder
from helpers.peer_process import (
    JS_NODE_MODULES,
    PeerProcess,
    js_peer_argv,
    py_peer_argv,
)

from engine.config import Config
from engine.crypto.identity import Identity, PeerId
from engine.errors import PeerIdMismatchError
from engine.net.host import Host
from engine.net.interface import P2PStream

pytestmark = pytest.mark.interop

KIB = 1024
MIB = 1024 * KIB
EXCHANGES = [(1000, KIB), (10, MIB)]  # (count, size) — each way
TIMEOUT = 30.0  # bound on every single step; the whole test stays far below it
IDENTIFY_ID = "/ipfs/id/1.0.0"
PING_ID = "/ipfs/ping/1.0.0"


def _peer_argv(impl: str) -> list[str]:
    if impl == "js-libp2p":
        if shutil.which("node") is None:
            pytest.skip("node is not installed (js-libp2p interop needs Node.js >= 20)")
        if not (JS_NODE_MODULES / "libp2p").is_dir():
            pytest.skip(
                "js-libp2p is not installed: run `npm ci --prefix tests/interop` "
                "(the CI script does)"
            )
        return js_peer_argv()
    return py_peer_argv()


class OurSide:
    """Our host, with an exchange handler that hands each responder result to the test."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.results: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.errors: list[BaseException] = []

    async def handle_exchange(self, stream: P2PStream) -> None:
        try:
            result = await run_exchange(stream, "responder")
        except BaseException as exc:
            self.errors.append(exc)
            raise
        result["remote_peer"] = str(stream.remote_peer)
        await self.results.put(result)


@pytest.fixture
async def ours() -> AsyncIterator[OurSide]:
    async with listening_host(Config()) as (host, _):
        side = OurSide(host)
        host.set_stream_handler(EXCHANGE_PROTOCOL, side.handle_exchange)  # before any dial
        yield side


def _assert_matches(
    initiator: dict[str, Any], responder: dict[str, Any], count: int, size: int
) -> None:
    for side in (initiator, responder):
        assert side["protocol"] == EXCHANGE_PROTOCOL
        assert (side["count"], side["size"]) == (count, size)
        assert side["sent_count"] == count
        assert side["recv_count"] == count
        assert side["recv_sizes"] == {str(size): count}
    # What each side sent is exactly what the other received, byte for byte.
    assert initiator["sent_sha256"] == responder["recv_sha256"]
    assert responder["sent_sha256"] == initiator["recv_sha256"]
    assert initiator["sent_sha256"] != initiator["recv_sha256"]


@pytest.mark.parametrize("direction", ["they_dial_us", "we_dial_them"])
@pytest.mark.parametrize("impl", ["py-libp2p", "js-libp2p"])
async def test_interop(impl: str, direction: str, ours: OurSide) -> None:
    argv = _peer_argv(impl)
    host = ours.host
    our_addr = p2p_addr(host)
    async with await PeerProcess.start(argv, name=impl) as peer:
        their_id = PeerId.from_string(peer.peer_id)

        # -- connect -------------------------------------------------------------------------
        if direction == "they_dial_us":
            dialed = await peer.command("dial", addr=our_addr, timeout=TIMEOUT)
            assert dialed["remote_peer"] == str(host.peer_id)
        else:
            peer_id, addr = split_p2p_addr(peer.addrs[0])
            assert peer_id == their_id
            info = await host.dial(their_id, [addr], timeout=TIMEOUT)
            assert info.peer_id == their_id
        assert host.is_connected(their_id)

        # -- identify, both ways -----------------------------------------------------------
        seen_by_them = await peer.command("identify", peer=str(host.peer_id), timeout=TIMEOUT)
        assert seen_by_them["agent_version"] == Config().agent_version
        assert {EXCHANGE_PROTOCOL, IDENTIFY_ID, PING_ID} <= set(seen_by_them["protocols"])
        if impl == "js-libp2p":  # js reports what the connection negotiated
            assert seen_by_them["encryption"] == "/noise"
            assert seen_by_them["multiplexer"] == "/yamux/1.0.0"
        ident = await host.wait_identified(their_id, timeout=TIMEOUT)
        assert ident.peer_id == their_id
        assert ident.agent_version == peer.ready["agent_version"]
        assert {EXCHANGE_PROTOCOL, IDENTIFY_ID, PING_ID} <= set(ident.protocols)
        conn_info = host.connection_info(their_id)
        assert conn_info is not None
        assert conn_info.agent_version == peer.ready["agent_version"]
        assert set(ident.protocols) == set(conn_info.protocols)

        # -- streams opened by us ------------------------------------------------------------
        for count, size in EXCHANGES:
            stream = await host.new_stream(their_id, [EXCHANGE_PROTOCOL], timeout=TIMEOUT)
            assert stream.protocol_id == EXCHANGE_PROTOCOL
            async with asyncio.timeout(TIMEOUT):
                mine = await run_exchange(stream, "initiator", count, size)
            theirs = await peer.wait_event(
                lambda e: e.get("event") in ("exchange", "exchange_error"), TIMEOUT
            )
            assert theirs["event"] == "exchange", theirs
            assert theirs["remote_peer"] == str(host.peer_id)
            _assert_matches(mine, theirs, count, size)

        # -- streams opened by them ----------------------------------------------------------
        for count, size in EXCHANGES:
            theirs = await peer.command(
                "exchange", peer=str(host.peer_id), count=count, size=size, timeout=TIMEOUT
            )
            async with asyncio.timeout(TIMEOUT):
                mine = await ours.results.get()
            assert mine["remote_peer"] == peer.peer_id
            _assert_matches(theirs, mine, count, size)
        assert not ours.errors

        # -- ping, both ways -----------------------------------------------------------------
        rtt = await host.ping(their_id, timeout=TIMEOUT)
        assert 0 <= rtt < TIMEOUT
        await peer.command("ping", peer=str(host.peer_id), timeout=TIMEOUT)
        assert host.is_connected(their_id)


@pytest.mark.parametrize("impl", ["py-libp2p", "js-libp2p"])
async def test_dialing_them_under_the_wrong_peer_id_is_refused(impl: str, ours: OurSide) -> None:
    argv = _peer_argv(impl)
    host = ours.host
    async with await PeerProcess.start(argv, name=impl) as peer:
        _, addr = split_p2p_addr(peer.addrs[0])
        impostor = Identity.generate().peer_id
        with pytest.raises(PeerIdMismatchError):
            await host.dial(impostor, [addr], timeout=TIMEOUT)
        assert not host.is_connected(impostor)
        # The real identity behind that address still connects.
        info = await host.dial(PeerId.from_string(peer.peer_id), [addr], timeout=TIMEOUT)
        assert str(info.peer_id) == peer.peer_id


@pytest.mark.parametrize("impl", ["py-libp2p", "js-libp2p"])
async def test_they_answer_our_keepalive(impl: str) -> None:
    """An idle, healthy foreign peer is never dropped by our keep-alive (it answers pings)."""
    argv = _peer_argv(impl)
    interval, timeout = 0.2, 1.0
    host = Host(Identity.generate(), Config(keepalive_interval=interval, keepalive_timeout=timeout))
    recorder = ConnectionRecorder()
    host.add_notifee(recorder)
    try:
        async with await PeerProcess.start(argv, name=impl) as peer:
            their_id, addr = split_p2p_addr(peer.addrs[0])
            await host.dial(their_id, [addr], timeout=TIMEOUT)
            # Idle for three keep-alive timeouts: a peer that ignored our pings would be
            # declared gone after one.
            with pytest.raises(TimeoutError):
                await recorder.wait_until(lambda r: r.disconnected_count > 0, 3 * timeout)
            assert host.is_connected(their_id)
            await peer.command("ping", peer=str(host.peer_id), timeout=TIMEOUT)
    finally:
        async with asyncio.timeout(10):
            await host.close()


@pytest.mark.parametrize("impl", ["py-libp2p", "js-libp2p"])
async def test_simultaneous_dial(impl: str, ours: OurSide) -> None:
    """Both sides dial each other at once: both dials succeed and streams work both ways."""
    argv = _peer_argv(impl)
    host = ours.host
    our_addr = p2p_addr(host)
    async with await PeerProcess.start(argv, name=impl) as peer:
        their_id, addr = split_p2p_addr(peer.addrs[0])
        info, dialed = await asyncio.gather(
            host.dial(their_id, [addr], timeout=TIMEOUT),
            peer.command("dial", addr=our_addr, timeout=TIMEOUT),
        )
        assert info.peer_id == their_id
        assert dialed["remote_peer"] == str(host.peer_id)

        stream = await host.new_stream(their_id, [EXCHANGE_PROTOCOL], timeout=TIMEOUT)
        async with asyncio.timeout(TIMEOUT):
            mine = await run_exchange(stream, "initiator", 100, KIB)
        theirs = await peer.wait_event(
            lambda e: e.get("event") in ("exchange", "exchange_error"), TIMEOUT
        )
        _assert_matches(mine, theirs, 100, KIB)

        theirs = await peer.command(
            "exchange", peer=str(host.peer_id), count=100, size=KIB, timeout=TIMEOUT
        )
        async with asyncio.timeout(TIMEOUT):
            mine = await ours.results.get()
        _assert_matches(theirs, mine, 100, KIB)
        assert host.connected_peers() == [their_id]
