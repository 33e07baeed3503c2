"""Two Glueberry nodes in one process: connect, handshake, exchange encrypted messages.

Run from the repository root: ``.venv/bin/python examples/two_nodes.py``.
"""

import asyncio
import tempfile
from pathlib import Path

from engine import Config, Node


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # Each node gets its own data directory (identity key) and listens on a free port.
        alice = Node(Config(data_dir=Path(tmp, "alice"), listen_addrs=["/ip4/127.0.0.1/tcp/0"]))
        bob = Node(Config(data_dir=Path(tmp, "bob"), listen_addrs=["/ip4/127.0.0.1/tcp/0"]))
        async with alice, bob:
            inbox = bob.messages(stream="messages")  # subscribe before anything arrives

            # Alice learns Bob's address, dials him and runs the built-in handshake.
            await alice.add_peer(bob.peer_id, [str(a) for a in bob.listen_addrs()])
            await alice.connect(bob.peer_id, timeout=10)
            print("state:", alice.connection_state(bob.peer_id))

            for i in range(3):
                await alice.send(bob.peer_id, "messages", f"hello #{i}".encode())
            async with asyncio.timeout(10):
                for _ in range(3):
                    message = await anext(inbox)
                    print(f"bob got {message.data.decode()!r} from {message.peer_id}")
            inbox.unsubscribe()


if __name__ == "__main__":
    asyncio.run(main())
