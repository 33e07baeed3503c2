"""py-libp2p peer for Glueberry's interoperability tests and benchmarks (test-only).

Run as a subprocess: ``python tests/interop/py_peer.py [--listen MULTIADDR]``. It runs
py-libp2p 0.8.1 on trio with exactly one security protocol (Noise) and one muxer
(yamux), so a connection to it can only succeed over Noise + yamux.

It speaks the JSON-lines peer protocol of :mod:`tests.helpers.peer_process` (the same as
``js_peer.mjs`` and ``tests/helpers/glueberry_peer.py``): a ``ready`` line on stdout, then
one reply per stdin command, plus ``exchange`` events for inbound exchange streams. The
exchange and sink protocols are described in :mod:`tests.helpers.exchange`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import secrets
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.host.ping import PingService
from libp2p.identity.identify.identify import ID as IDENTIFY_ID
from libp2p.identity.identify.pb.identify_pb2 import Identify as IdentifyMsg
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.utils.varint import read_length_prefixed_protobuf
from libp2p.utils.version import get_agent_version

EXCHANGE = TProtocol("/glueberry-interop/exchange/1.0.0")
SINK = TProtocol("/glueberry-interop/sink/1.0.0")
MAX_FRAME = 16 * 1024 * 1024
READ_SIZE = 65536


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def read_chunk(stream: Any) -> bytes:
    """One chunk from a py-libp2p stream; ``b""`` at end of stream."""
    try:
        return bytes(await stream.read(READ_SIZE))
    except StreamEOF:
        return b""


class FrameReader:
    """Reads 4-byte big-endian length-prefixed frames from a stream."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._buf = bytearray()
        self.eof = False

    async def next(self) -> bytes | None:
        while True:
            if len(self._buf) >= 4:
                (length,) = struct.unpack(">I", self._buf[:4])
                if length > MAX_FRAME:
                    raise ValueError(f"frame too large: {length}")
                if len(self._buf) >= 4 + length:
                    payload = bytes(self._buf[4 : 4 + length])
                    del self._buf[: 4 + length]
                    return payload
            chunk = await read_chunk(self._stream)
            if not chunk:
                self.eof = True
                if self._buf:
                    raise ValueError(f"{len(self._buf)} trailing bytes at end of stream")
                return None
            self._buf += chunk


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


async def send_frames(stream: Any, count: int, size: int) -> dict[str, Any]:
    digest = hashlib.sha256()
    for _ in range(count):
        payload = secrets.token_bytes(size)
        digest.update(payload)
        await stream.write(frame(payload))
    await stream.close_write()
    return {"count": count, "sha256": digest.hexdigest()}


async def recv_frames(reader: FrameReader) -> dict[str, Any]:
    digest = hashlib.sha256()
    count = 0
    sizes: dict[str, int] = {}
    while (payload := await reader.next()) is not None:
        count += 1
        sizes[str(len(payload))] = sizes.get(str(len(payload)), 0) + 1
        digest.update(payload)
    return {"count": count, "sha256": digest.hexdigest(), "sizes": sizes}


async def run_exchange(stream: Any, role: str, count: int = 0, size: int = 0) -> dict[str, Any]:
    started = time.perf_counter()
    reader = FrameReader(stream)
    if role == "initiator":
        await stream.write(frame(json.dumps({"count": count, "size": size}).encode()))
    else:
        header = await reader.next()
        if header is None:
            raise ValueError("stream ended before the exchange header")
        params = json.loads(header)
        count, size = int(params["count"]), int(params["size"])
    results: dict[str, dict[str, Any]] = {}

    async def sender() -> None:
        results["sent"] = await send_frames(stream, count, size)

    async def receiver() -> None:
        results["recv"] = await recv_frames(reader)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        nursery.start_soon(receiver)
    await stream.close()
    return {
        "role": role,
        "protocol": str(stream.get_protocol()),
        "count": count,
        "size": size,
        "sent_count": results["sent"]["count"],
        "sent_sha256": results["sent"]["sha256"],
        "recv_count": results["recv"]["count"],
        "recv_sha256": results["recv"]["sha256"],
        "recv_sizes": results["recv"]["sizes"],
        "elapsed_ms": (time.perf_counter() - started) * 1000,
    }


class Peer:
    def __init__(self, host: Any) -> None:
        self.host = host
        self.ping_service = PingService(host)

    # -- inbound handlers ------------------------------------------------------------------

    async def handle_exchange(self, stream: Any) -> None:
        remote = str(stream.muxed_conn.peer_id)
        try:
            result = await run_exchange(stream, "responder")
        except Exception as exc:
            emit({"event": "exchange_error", "role": "responder", "error": repr(exc)})
            await stream.reset()
            return
        emit({"event": "exchange", "remote_peer": remote, **result})

    async def handle_sink(self, stream: Any) -> None:
        total = 0
        try:
            while chunk := await read_chunk(stream):
                total += len(chunk)
            await stream.write(struct.pack(">Q", total))
            await stream.close()
        except Exception:
            await stream.reset()

    # -- commands ----------------------------------------------------------------------------

    async def _connection(self, peer: str, timeout: float = 10.0) -> Any:
        """The connection to ``peer``, waiting for it to be registered.

        When the other side dialed, its dial can return before py-libp2p has finished its
        side of the upgrade and registered the connection: wait for it (bounded).
        """
        network = self.host.get_network()
        with trio.fail_after(timeout):
            while not (conns := network.get_connections(ID.from_base58(peer))):
                await trio.sleep(0.01)
        return conns[0]

    async def cmd_dial(self, cmd: dict[str, Any]) -> dict[str, Any]:
        info = info_from_p2p_addr(multiaddr.Multiaddr(cmd["addr"]))
        started = time.perf_counter()
        with trio.fail_after(cmd.get("timeout", 10)):
            await self.host.connect(info)
        elapsed = (time.perf_counter() - started) * 1000
        conn = await self._connection(str(info.peer_id))
        return {
            "remote_peer": str(info.peer_id),
            "multiplexer": type(conn.muxed_conn).__name__,
            "elapsed_ms": elapsed,
        }

    async def cmd_exchange(self, cmd: dict[str, Any]) -> dict[str, Any]:
        with trio.fail_after(cmd.get("timeout", 30)):
            await self._connection(cmd["peer"])
            stream = await self.host.new_stream(ID.from_base58(cmd["peer"]), [EXCHANGE])
            result = await run_exchange(stream, "initiator", int(cmd["count"]), int(cmd["size"]))
        return {"remote_peer": cmd["peer"], **result}

    async def cmd_identify(self, cmd: dict[str, Any]) -> dict[str, Any]:
        # py-libp2p keeps no agent version in its peer store: run identify explicitly.
        with trio.fail_after(cmd.get("timeout", 10)):
            conn = await self._connection(cmd["peer"])
            stream = await self.host.new_stream(ID.from_base58(cmd["peer"]), [IDENTIFY_ID])
            data = await read_length_prefixed_protobuf(stream, use_varint_format=True)
            await stream.close()
        msg = IdentifyMsg()
        msg.ParseFromString(data)
        return {
            "peer": cmd["peer"],
            "agent_version": msg.agent_version,
            "protocol_version": msg.protocol_version,
            "protocols": list(msg.protocols),
            "listen_addrs": [str(multiaddr.Multiaddr(a)) for a in msg.listen_addrs],
            "multiplexer": type(conn.muxed_conn).__name__,
        }

    async def cmd_ping(self, cmd: dict[str, Any]) -> dict[str, Any]:
        with trio.fail_after(cmd.get("timeout", 10)):
            await self._connection(cmd["peer"])
            rtts = await self.ping_service.ping(ID.from_base58(cmd["peer"]))
        return {"rtt_ms": rtts[0]}

    async def cmd_disconnect(self, cmd: dict[str, Any]) -> dict[str, Any]:
        await self.host.disconnect(ID.from_base58(cmd["peer"]))
        return {}

    async def cmd_connected(self, cmd: dict[str, Any]) -> dict[str, Any]:
        conns = self.host.get_network().get_connections(ID.from_base58(cmd["peer"]))
        return {"connected": bool(conns)}

    async def cmd_bench_dial(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Dial ``addr`` ``n`` times (a fresh connection each time); latencies in ms."""
        info = info_from_p2p_addr(multiaddr.Multiaddr(cmd["addr"]))
        latencies = []
        for _ in range(int(cmd["n"])):
            started = time.perf_counter()
            with trio.fail_after(cmd.get("timeout", 10)):
                await self.host.connect(info)
            latencies.append((time.perf_counter() - started) * 1000)
            await self.host.disconnect(info.peer_id)
        return {"latencies_ms": latencies}

    async def cmd_bench_sink(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Write ``total`` bytes in writes of ``size`` on a sink stream; time until acked."""
        size, total = int(cmd["size"]), int(cmd["total"])
        chunk = secrets.token_bytes(size)
        with trio.fail_after(cmd.get("timeout", 120)):
            await self._connection(cmd["peer"])
            stream = await self.host.new_stream(ID.from_base58(cmd["peer"]), [SINK])
            started = time.perf_counter()
            sent = 0
            while sent < total:
                await stream.write(chunk)
                sent += size
            await stream.close_write()
            reply = b""
            while len(reply) < 8:
                part = await read_chunk(stream)
                if not part:
                    raise RuntimeError("sink closed before its byte count")
                reply += part
            elapsed = time.perf_counter() - started
            await stream.close()
        (acked,) = struct.unpack(">Q", reply[:8])
        return {"bytes": sent, "acked": acked, "seconds": elapsed}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", default="/ip4/127.0.0.1/tcp/0")
    args = parser.parse_args()

    key_pair = create_new_key_pair()
    host = new_host(
        key_pair=key_pair,
        # Exactly Noise and yamux: the interop tests must not pass over anything else.
        sec_opt={
            NOISE_PROTOCOL_ID: NoiseTransport(
                key_pair, noise_privkey=create_new_x25519_key_pair().private_key
            )
        },
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        listen_addrs=[multiaddr.Multiaddr(args.listen)],
    )
    peer = Peer(host)
    handlers: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
        "dial": peer.cmd_dial,
        "exchange": peer.cmd_exchange,
        "identify": peer.cmd_identify,
        "ping": peer.cmd_ping,
        "disconnect": peer.cmd_disconnect,
        "connected": peer.cmd_connected,
        "bench_dial": peer.cmd_bench_dial,
        "bench_sink": peer.cmd_bench_sink,
    }

    async with host.run(listen_addrs=[multiaddr.Multiaddr(args.listen)]):
        host.set_stream_handler(EXCHANGE, peer.handle_exchange)
        host.set_stream_handler(SINK, peer.handle_sink)
        emit(
            {
                "event": "ready",
                "impl": "py-libp2p",
                "peer_id": str(host.get_id()),
                "addrs": [f"{a}/p2p/{host.get_id()}" for a in host.get_transport_addrs()],
                "agent_version": get_agent_version(),
                "protocols": [str(p) for p in host.get_mux().get_protocols() if p],
            }
        )

        async def run_command(cmd: dict[str, Any]) -> None:
            handler = handlers.get(cmd.get("cmd", ""))
            if handler is None:
                emit({"id": cmd.get("id"), "ok": False, "error": f"unknown command {cmd!r}"})
                return
            try:
                result = await handler(cmd)
            except BaseException as exc:  # report, keep serving
                if isinstance(exc, trio.Cancelled):
                    raise
                emit({"id": cmd.get("id"), "ok": False, "error": repr(exc)})
                return
            emit({"id": cmd.get("id"), "ok": True, **result})

        stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
        buf = b""
        async with trio.open_nursery() as nursery:
            done = False
            while not done:
                data = await stdin.receive_some(65536)
                if not data:
                    break
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if not line.strip():
                        continue
                    cmd = json.loads(line)
                    if cmd.get("cmd") == "exit":
                        emit({"id": cmd.get("id"), "ok": True})
                        done = True
                        break
                    nursery.start_soon(run_command, cmd)
            nursery.cancel_scope.cancel()
        await stdin.aclose()


if __name__ == "__main__":
    logging.basicConfig(level=logging.CRITICAL)
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(main)
    # py-libp2p may leave background threads behind; do not wait for them.
    sys.stdout.flush()
    os._exit(0)
