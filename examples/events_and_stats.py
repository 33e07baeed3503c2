"""Connection events and per-stream statistics of a Glueberry node.

Alice watches Bob's connection events through an ``EventFilter``, connects, exchanges a
few messages on two streams, prints the per-stream counters of ``peer_stats()``, then
disconnects and prints every state transition she saw, in order.

Run from the repository root: ``.venv/bin/python examples/events_and_stats.py``.
"""

import asyncio
import tempfile
from pathlib import Path

from engine import Config, ConnectionState, EventFilter, Node


def make_node(tmp: str, name: str) -> Node:
    return Node(
        Config(
            data_dir=Path(tmp, name),
            listen_addrs=["/ip4/127.0.0.1/tcp/0"],
            default_streams=["chat", "files"],
        )
    )


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        alice, bob = make_node(tmp, "alice"), make_node(tmp, "bob")
        async with alice, bob:
            print("bob is", bob.peer_id)
            # Only Bob's events; subscribe before connecting so no transition is missed.
            events = alice.subscribe(EventFilter(peers={bob.peer_id}))
            bob_inbox = bob.messages()
            alice_inbox = alice.messages()

            await alice.add_peer(bob.peer_id, [str(a) for a in bob.listen_addrs()])
            await alice.connect(bob.peer_id, timeout=10)

            # Alice sends 3 chat messages and one file; Bob answers with 2 chat messages.
            for text in ("hi", "how are you?", "bye"):
                await alice.send(bob.peer_id, "chat", text.encode())
            await alice.send(bob.peer_id, "files", bytes(1000))
            async with asyncio.timeout(10):
                for _ in range(4):
                    await anext(bob_inbox)
            for text in ("hello", "fine"):
                await bob.send(alice.peer_id, "chat", text.encode())
            async with asyncio.timeout(10):
                for _ in range(2):
                    await anext(alice_inbox)

            stats = alice.peer_stats(bob.peer_id)
            assert stats is not None
            for name in sorted(stats.streams):
                s = stats.streams[name]
                print(
                    f"stream {name}: messages out={s.messages_out} in={s.messages_in}, "
                    f"bytes out={s.bytes_out} in={s.bytes_in}"
                )
            print(
                f"total: messages out={stats.messages_out} in={stats.messages_in}, "
                f"bytes out={stats.bytes_out} in={stats.bytes_in}"
            )

            await alice.disconnect(bob.peer_id)
            async with asyncio.timeout(10):
                async for event in events:
                    print(f"event: {event.previous_state} -> {event.state}")
                    if event.state is ConnectionState.DISCONNECTED:
                        break
            events.unsubscribe()
            bob_inbox.unsubscribe()
            alice_inbox.unsubscribe()


if __name__ == "__main__":
    asyncio.run(main())
