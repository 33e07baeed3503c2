"""An application-driven handshake (``handshake_mode="app"``) between Glueberry nodes.

The application, not the engine, decides who may talk: each side sends a JSON hello with
its public key and an application token. The protocol, over ``send_handshake_message``:

    dialer      on connected: send hello
    listener    on hello: check token and key -> prepare_streams, send hello
    dialer      on hello: check token and key -> prepare_streams, finalize_handshake,
                send ready
    listener    on ready: finalize_handshake

Each side finalizes only after learning that the other side has prepared (the two-phase
rule of docs/protocol.md): the listener's hello and the dialer's ready say "I can receive".
A third node, Mallory, presents a wrong token: Bob refuses her by blacklisting her peer
id, which closes the connection; she never becomes ``established``.

Run from the repository root: ``.venv/bin/python examples/app_handshake.py``.
"""

import asyncio
import base64
import contextlib
import json
import tempfile
from pathlib import Path

from engine import (
    Config,
    ConnectionState,
    EventFilter,
    GlueberryError,
    HandshakeMode,
    Node,
    PeerId,
)

TOKEN = "glueberry-example-token"  # noqa: S105 -- an example value, not a credential
STREAMS = ["chat"]


class HandshakeApp:
    """Drives the ``app`` handshake of one node and logs what it does.

    Args:
        name: a display name for the log.
        node: the node (in ``app`` handshake mode).
        token: the token this side presents.
        names: display names of known peer ids.
    """

    def __init__(self, name: str, node: Node, token: str, names: dict[PeerId, str]) -> None:
        self.name = name
        self.node = node
        self.token = token
        self.names = names
        self.log: list[str] = []
        self.established: dict[PeerId, asyncio.Event] = {}
        self.refused: dict[PeerId, asyncio.Event] = {}
        self._said_hello: set[PeerId] = set()

    def _event(self, table: dict[PeerId, asyncio.Event], peer: PeerId) -> asyncio.Event:
        return table.setdefault(peer, asyncio.Event())

    async def wait_established(self, peer: PeerId) -> None:
        """Wait until this side has finalized the handshake with ``peer``."""
        await self._event(self.established, peer).wait()

    async def wait_refused(self, peer: PeerId) -> None:
        """Wait until this side has refused ``peer``."""
        await self._event(self.refused, peer).wait()

    def _say(self, line: str) -> None:
        self.log.append(f"{self.name}: {line}")

    async def _send(self, peer: PeerId, message: dict[str, str]) -> None:
        await self.node.send_handshake_message(peer, json.dumps(message).encode())
        self._say(f"sent {message['type']} to {self.names[peer]}")

    async def _hello(self, peer: PeerId) -> None:
        self._said_hello.add(peer)
        key = base64.b64encode(self.node.public_key).decode()
        await self._send(peer, {"type": "hello", "public_key": key, "token": self.token})

    async def watch_connections(self) -> None:
        """On every new outbound connection, start the handshake with a hello."""
        with self.node.subscribe(EventFilter(states={ConnectionState.CONNECTED})) as events:
            async for event in events:
                if self.node.is_outbound(event.peer_id):
                    await self._hello(event.peer_id)

    async def run(self) -> None:
        """Answer handshake messages until the node stops."""
        with self.node.handshake_messages() as inbox:
            async for message in inbox:
                try:
                    parsed = json.loads(message.data)
                except ValueError:
                    parsed = {"type": "malformed"}
                if not isinstance(parsed, dict):
                    parsed = {"type": "malformed"}
                try:
                    await self._on_message(message.peer_id, parsed)
                except GlueberryError as exc:  # e.g. the peer went away meanwhile
                    self._say(f"handshake with {self.names[message.peer_id]} failed: {exc.code}")

    async def _on_message(self, peer: PeerId, message: dict[str, str]) -> None:
        name = self.names[peer]
        kind = message.get("type", "malformed")
        self._say(f"got {kind} from {name}")
        if kind == "hello":
            key, problem = _check_hello(peer, message)
            if problem:
                self._say(f"refusing {name}: {problem}")
                await self.node.blacklist_peer(peer, reason=problem)
                self._event(self.refused, peer).set()
                return
            await self.node.prepare_streams(peer, key, STREAMS)
            self._say(f"prepared {STREAMS} for {name}")
            if peer not in self._said_hello:
                await self._hello(peer)  # listener: our hello also says "prepared"
                return
            await self._finalize(peer)  # dialer: the peer's hello said "prepared"
            await self._send(peer, {"type": "ready"})
        elif kind == "ready":
            await self._finalize(peer)

    async def _finalize(self, peer: PeerId) -> None:
        await self.node.finalize_handshake(peer)
        self._say(f"finalized {self.names[peer]}: {self.node.connection_state(peer)}")
        self._event(self.established, peer).set()


def _check_hello(peer: PeerId, hello: dict[str, str]) -> tuple[bytes, str]:
    """The peer's public key from its hello, and why the hello is refused ("" if not)."""
    if hello.get("token") != TOKEN:
        return b"", "bad token"
    try:
        key = base64.b64decode(hello["public_key"], validate=True)
    except (KeyError, ValueError):
        return b"", "malformed public key"
    if len(key) != 32 or PeerId.from_public_key(key) != peer:
        return b"", "public key does not match the peer id"
    return key, ""


def make_node(tmp: str, name: str) -> Node:
    return Node(
        Config(
            data_dir=Path(tmp, name),
            listen_addrs=["/ip4/127.0.0.1/tcp/0"],
            handshake_mode=HandshakeMode.APP,  # the application drives the handshake
        )
    )


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        alice, bob, mallory = (make_node(tmp, n) for n in ("alice", "bob", "mallory"))
        async with alice, bob, mallory:
            names = {alice.peer_id: "alice", bob.peer_id: "bob", mallory.peer_id: "mallory"}
            for node, name in ((alice, "alice"), (bob, "bob"), (mallory, "mallory")):
                print(f"{name} is {node.peer_id}")
            apps = [
                HandshakeApp("alice", alice, TOKEN, names),
                HandshakeApp("bob", bob, TOKEN, names),
                HandshakeApp("mallory", mallory, "wrong-token", names),
            ]
            tasks = [asyncio.create_task(c) for a in apps for c in (a.run(), a.watch_connections())]
            bob_addrs = [str(a) for a in bob.listen_addrs()]

            # Alice dials Bob; connect() returns once the apps have finalized both sides.
            await alice.add_peer(bob.peer_id, bob_addrs)
            await alice.connect(bob.peer_id, timeout=10)
            async with asyncio.timeout(10):
                await apps[1].wait_established(alice.peer_id)
            for line in apps[0].log + apps[1].log:
                print(line)

            chat = bob.messages(stream="chat")
            for text in ("hi Bob", "the token checked out"):
                await alice.send(bob.peer_id, "chat", text.encode())
            async with asyncio.timeout(10):
                for _ in range(2):
                    message = await anext(chat)
                    print(f"bob got {message.data.decode()!r} from {names[message.peer_id]}")
            chat.unsubscribe()

            # Mallory dials Bob with a wrong token: Bob blacklists her, she never finalizes.
            apps[1].log.clear()
            await mallory.add_peer(bob.peer_id, bob_addrs)
            connecting = asyncio.create_task(mallory.connect(bob.peer_id, timeout=10))
            async with asyncio.timeout(10):
                await apps[1].wait_refused(mallory.peer_id)
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, GlueberryError):
                await connecting
            for line in apps[1].log:
                print(line)
            print("bob: mallory blacklisted:", bob.is_blacklisted(mallory.peer_id))
            print("bob: mallory state:", bob.connection_state(mallory.peer_id))
            print("bob: established peers:", sorted(names[p] for p in _established(bob)))

            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _established(node: Node) -> list[PeerId]:
    states = node.peer_states()
    return [p for p, s in states.items() if s is ConnectionState.ESTABLISHED]


if __name__ == "__main__":
    asyncio.run(main())
