"""A peer running our own libp2p stack in a subprocess (liveness, churn, scale, bench).

Run: ``python -m helpers.glueberry_peer [--listen MULTIADDR | --no-listen]
[--keepalive-interval S --keepalive-timeout S]`` with ``tests/`` on ``PYTHONPATH``
(:func:`helpers.peer_process.glueberry_peer_argv` does this). It speaks the JSON-lines
protocol of :mod:`helpers.peer_process`, the exchange/sink protocols of
:mod:`helpers.exchange`, and a few commands of its own:

- ``churn {addr, n, concurrency}``: open and close ``n`` connections to ``addr``, each
  from a fresh identity (a new client host per connection), ``concurrency`` at a time.
- ``raw_churn {addr, n, concurrency}``: plain TCP connections that send junk or nothing
  and close (they never finish the security handshake).
- ``hold {addr, n, concurrency}`` / ``release``: open ``n`` connections from fresh
  identities and keep them until ``release``.
- ``bench_dial {addr, n}``: dial ``n`` times (a fresh connection each time), latencies.
- ``bench_sink {peer, size, total}``: sink throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from multiaddr import Multiaddr

from engine.config import Config
from engine.crypto.identity import Identity, PeerId
from engine.net.host import Host
from engine.net.interface import P2PStream
from helpers.exchange import (
    EXCHANGE_PROTOCOL,
    SINK_PROTOCOL,
    handle_sink,
    run_exchange,
    run_sink,
)

__all__ = ["main", "split_p2p_addr"]


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def split_p2p_addr(text: str) -> tuple[PeerId, Multiaddr]:
    """``/ip4/.../tcp/N/p2p/<id>`` -> (peer id, transport address)."""
    transport, sep, peer = text.partition("/p2p/")
    if not sep:
        raise ValueError(f"address has no /p2p/ part: {text}")
    return PeerId.from_string(peer), Multiaddr(transport)


class Peer:
    """Command handlers around one listening (or dial-only) host."""

    def __init__(self, host: Host, config: Config) -> None:
        self.host = host
        self.config = config
        self.held: list[Host] = []

    def _new_host(self) -> Host:
        return Host(Identity.generate(), self.config)

    async def handle_exchange(self, stream: P2PStream) -> None:
        try:
            result = await run_exchange(stream, "responder")
        except Exception as exc:
            emit({"event": "exchange_error", "role": "responder", "error": repr(exc)})
            await stream.reset()
            return
        emit({"event": "exchange", "remote_peer": str(stream.remote_peer), **result})

    async def cmd_dial(self, cmd: dict[str, Any]) -> dict[str, Any]:
        peer, addr = split_p2p_addr(cmd["addr"])
        started = time.perf_counter()
        info = await self.host.dial(peer, [addr], timeout=float(cmd.get("timeout", 10)))
        return {
            "remote_peer": str(info.peer_id),
            "elapsed_ms": (time.perf_counter() - started) * 1000,
        }

    async def cmd_exchange(self, cmd: dict[str, Any]) -> dict[str, Any]:
        peer = PeerId.from_string(cmd["peer"])
        async with asyncio.timeout(float(cmd.get("timeout", 30))):
            stream = await self.host.new_stream(peer, [EXCHANGE_PROTOCOL], timeout=10.0)
            result = await run_exchange(stream, "initiator", int(cmd["count"]), int(cmd["size"]))
        return {"remote_peer": cmd["peer"], **result}

    async def cmd_identify(self, cmd: dict[str, Any]) -> dict[str, Any]:
        peer = PeerId.from_string(cmd["peer"])
        ident = await self.host.wait_identified(peer, timeout=float(cmd.get("timeout", 10)))
        return {
            "peer": cmd["peer"],
            "agent_version": ident.agent_version,
            "protocol_version": ident.protocol_version,
            "protocols": list(ident.protocols),
        }

    async def cmd_ping(self, cmd: dict[str, Any]) -> dict[str, Any]:
        rtt = await self.host.ping(
            PeerId.from_string(cmd["peer"]), timeout=float(cmd.get("timeout", 10))
        )
        return {"rtt_ms": rtt * 1000}

    async def cmd_disconnect(self, cmd: dict[str, Any]) -> dict[str, Any]:
        await self.host.disconnect(PeerId.from_string(cmd["peer"]))
        return {}

    async def cmd_connected(self, cmd: dict[str, Any]) -> dict[str, Any]:
        return {"connected": self.host.is_connected(PeerId.from_string(cmd["peer"]))}

    async def _many(
        self, n: int, concurrency: int, one: Callable[[], Awaitable[None]]
    ) -> dict[str, Any]:
        errors: list[str] = []
        ok = 0
        next_index = 0

        async def worker() -> None:
            nonlocal ok, next_index
            while next_index < n:
                next_index += 1
                try:
                    await one()
                    ok += 1
                except Exception as exc:
                    errors.append(repr(exc))

        started = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for _ in range(max(1, min(concurrency, n))):
                tg.create_task(worker())
        return {
            "ok_count": ok,
            "failed": len(errors),
            "errors": errors[:5],
            "seconds": time.perf_counter() - started,
        }

    async def cmd_churn(self, cmd: dict[str, Any]) -> dict[str, Any]:
        peer, addr = split_p2p_addr(cmd["addr"])
        timeout = float(cmd.get("timeout", 10))

        async def one() -> None:
            client = self._new_host()
            try:
                await client.dial(peer, [addr], timeout=timeout)
            finally:
                await client.close()

        return await self._many(int(cmd["n"]), int(cmd.get("concurrency", 4)), one)

    async def cmd_raw_churn(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Plain TCP connections that never finish a handshake: half send junk, all close."""
        _, addr = split_p2p_addr(cmd["addr"])
        ip, port = addr.value_for_protocol("ip4"), int(addr.value_for_protocol("tcp"))
        counter = 0

        async def one() -> None:
            nonlocal counter
            counter += 1
            _, writer = await asyncio.open_connection(ip, port)
            try:
                if counter % 2:
                    writer.write(os.urandom(64))
                    await writer.drain()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

        return await self._many(int(cmd["n"]), int(cmd.get("concurrency", 4)), one)

    async def cmd_hold(self, cmd: dict[str, Any]) -> dict[str, Any]:
        peer, addr = split_p2p_addr(cmd["addr"])
        timeout = float(cmd.get("timeout", 20))

        async def one() -> None:
            client = self._new_host()
            try:
                await client.dial(peer, [addr], timeout=timeout)
            except BaseException:
                await client.close()
                raise
            self.held.append(client)

        result = await self._many(int(cmd["n"]), int(cmd.get("concurrency", 8)), one)
        result["held"] = len(self.held)
        return result

    async def cmd_release(self, cmd: dict[str, Any]) -> dict[str, Any]:
        held, self.held = self.held, []
        for client in held:
            await client.close()
        return {"released": len(held)}

    async def cmd_bench_dial(self, cmd: dict[str, Any]) -> dict[str, Any]:
        peer, addr = split_p2p_addr(cmd["addr"])
        latencies = []
        for _ in range(int(cmd["n"])):
            started = time.perf_counter()
            await self.host.dial(peer, [addr], timeout=float(cmd.get("timeout", 10)))
            latencies.append((time.perf_counter() - started) * 1000)
            await self.host.disconnect(peer)
        return {"latencies_ms": latencies}

    async def cmd_bench_sink(self, cmd: dict[str, Any]) -> dict[str, Any]:
        peer = PeerId.from_string(cmd["peer"])
        async with asyncio.timeout(float(cmd.get("timeout", 120))):
            stream = await self.host.new_stream(peer, [SINK_PROTOCOL], timeout=10.0)
            return await run_sink(stream, int(cmd["size"]), int(cmd["total"]))


async def main(argv: list[str] | None = None) -> None:
    """Run the peer until stdin closes or ``exit`` arrives."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", default="/ip4/127.0.0.1/tcp/0")
    parser.add_argument("--no-listen", action="store_true")
    parser.add_argument("--keepalive-interval", type=float, default=None)
    parser.add_argument("--keepalive-timeout", type=float, default=None)
    args = parser.parse_args(argv)

    overrides: dict[str, Any] = {
        "max_connections": 100_000,
        "max_pending_connections": 10_000,
        "max_connections_per_ip": 100_000,
        "connection_rate_per_ip": 100_000.0,
    }
    if args.keepalive_interval is not None:
        overrides["keepalive_interval"] = args.keepalive_interval
    if args.keepalive_timeout is not None:
        overrides["keepalive_timeout"] = args.keepalive_timeout
    config = Config(**overrides)
    identity = Identity.generate()
    host = Host(identity, config)
    peer = Peer(host, config)
    host.set_stream_handler(EXCHANGE_PROTOCOL, peer.handle_exchange)
    host.set_stream_handler(SINK_PROTOCOL, handle_sink)
    if not args.no_listen:
        await host.listen([Multiaddr(args.listen)])
    emit(
        {
            "event": "ready",
            "impl": "glueberry",
            "peer_id": str(host.peer_id),
            "pid": os.getpid(),
            "addrs": [f"{a}/p2p/{host.peer_id}" for a in host.listen_addrs()],
            "agent_version": config.agent_version,
            "protocols": [EXCHANGE_PROTOCOL, SINK_PROTOCOL],
        }
    )
    handlers: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
        name.removeprefix("cmd_"): getattr(peer, name)
        for name in dir(peer)
        if name.startswith("cmd_")
    }

    async def run_command(cmd: dict[str, Any]) -> None:
        handler = handlers.get(str(cmd.get("cmd")))
        if handler is None:
            emit({"id": cmd.get("id"), "ok": False, "error": f"unknown command {cmd!r}"})
            return
        try:
            result = await handler(cmd)
        except Exception as exc:
            emit({"id": cmd.get("id"), "ok": False, "error": repr(exc)})
            return
        emit({"id": cmd.get("id"), "ok": True, **result})

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tasks: set[asyncio.Task[None]] = set()
    try:
        while line := await reader.readline():
            if not line.strip():
                continue
            cmd = json.loads(line)
            if cmd.get("cmd") == "exit":
                emit({"id": cmd.get("id"), "ok": True})
                break
            task = asyncio.create_task(run_command(cmd))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await peer.cmd_release({})
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await host.close()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
