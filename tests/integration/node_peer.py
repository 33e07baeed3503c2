"""A Glueberry node in a subprocess, for the SIGKILL/restart test and the benchmark.

Usage: ``python node_peer.py KEY_FILE PORT [STREAM ...]``. Prints one JSON line
``{"event": "ready", "peer_id", "addrs"}`` once listening, echoes every message it receives
back to its sender on the same stream, and exits at EOF on stdin.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from engine.config import Config
from engine.crypto.identity import Identity
from engine.node import Node


async def main(key_file: str, port: int, streams: list[str]) -> None:
    identity = Identity.load_or_create(key_file)
    config = Config(
        data_dir=Path(key_file).parent,
        listen_addrs=[f"/ip4/127.0.0.1/tcp/{port}"],
        default_streams=streams or ["messages"],
        auto_connect=False,
        message_buffer_size=100_000,
    )
    node = Node(config, identity=identity)
    await node.start()
    print(
        json.dumps(
            {
                "event": "ready",
                "peer_id": node.peer_id.to_string(),
                "addrs": [str(a) for a in node.listen_addrs()],
            }
        ),
        flush=True,
    )

    async def echo() -> None:
        async for msg in node.messages():
            await node.send(msg.peer_id, msg.stream, msg.data)

    echoer = asyncio.ensure_future(echo())
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    echoer.cancel()
    await node.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3:]))
