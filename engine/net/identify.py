"""identify (``/ipfs/id/1.0.0``): tell a peer who we are, learn who it is.

The responder writes one ``Identify`` protobuf, length-prefixed with a uvarint as
go-libp2p, js-libp2p and py-libp2p do, then closes its write side. The reader accepts
that form and, for old peers, a bare message ending at end of stream. Push
(``/ipfs/id/push/1.0.0``) is not implemented.

:class:`IdentifyInfo` is what the host keeps per connection: protocol and agent
versions, listen addresses, the address the peer observed for us, and its protocols. A
public key that does not match the authenticated peer id is refused.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from multiaddr import Multiaddr

from engine.crypto.identity import PeerId, decode_public_key_proto, encode_public_key_proto
from engine.errors import (
    InvalidPublicKeyError,
    MalformedFrameError,
    RemoteProtocolError,
)
from engine.net.interface import P2PStream
from engine.net.protobuf import MAX_IDENTIFY_SIZE, IdentifyMessage
from engine.varint import decode_uvarint, encode_uvarint

__all__ = [
    "IDENTIFY_PROTOCOL_ID",
    "PROTOCOL_VERSION",
    "IdentifyInfo",
    "build_identify",
    "decode_identify_response",
    "read_identify",
    "write_identify",
]

IDENTIFY_PROTOCOL_ID = "/ipfs/id/1.0.0"
PROTOCOL_VERSION = "ipfs/0.1.0"

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IdentifyInfo:
    """What a peer told us about itself through identify.

    Attributes:
        peer_id: the authenticated peer.
        protocol_version: e.g. ``ipfs/0.1.0``.
        agent_version: e.g. ``js-libp2p/3.2.0``.
        listen_addrs: addresses the peer listens on (unparsable ones dropped).
        observed_addr: our address as the peer sees it.
        protocols: protocol ids the peer handles.
    """

    peer_id: PeerId
    protocol_version: str | None
    agent_version: str | None
    listen_addrs: tuple[Multiaddr, ...]
    observed_addr: Multiaddr | None
    protocols: tuple[str, ...]


def build_identify(
    *,
    public_key: bytes,
    agent_version: str,
    listen_addrs: Sequence[Multiaddr],
    observed_addr: Multiaddr | None,
    protocols: Sequence[str],
) -> bytes:
    """The uvarint-length-prefixed Identify message we send.

    Args:
        public_key: our raw 32-byte Ed25519 public key.
        agent_version: announced agent.
        listen_addrs: our listen addresses.
        observed_addr: the peer's address as we see it.
        protocols: the protocols we handle.

    Returns:
        ``uvarint(len) || Identify``.
    """

    msg = IdentifyMessage(
        protocol_version=PROTOCOL_VERSION,
        agent_version=agent_version,
        public_key=encode_public_key_proto(public_key),
        listen_addrs=tuple(bytes(a) for a in listen_addrs),
        observed_addr=bytes(observed_addr) if observed_addr is not None else None,
        protocols=tuple(protocols),
    ).serialize()
    return encode_uvarint(len(msg)) + msg


def _multiaddr(raw: bytes) -> Multiaddr | None:
    try:
        addr = Multiaddr(raw)
        str(addr)  # parsing is lazy: force it so a bad address fails here
        return addr
    except Exception:  # the multiaddr package raises several types
        return None


def decode_identify_response(data: bytes, peer_id: PeerId) -> IdentifyInfo:
    """Decode what the peer wrote on the identify stream (prefixed or bare).

    Args:
        data: every byte read until end of stream.
        peer_id: the authenticated peer (its key must match an announced public key).

    Returns:
        The decoded information.

    Raises:
        RemoteProtocolError: malformed message, or a public key of another peer.
    """
    body = data
    try:
        header = decode_uvarint(data)
    except MalformedFrameError:
        header = None
    if header is not None and header[0] == len(data) - header[1]:
        body = data[header[1] :]
    try:
        msg = IdentifyMessage.parse(body)
    except MalformedFrameError as exc:
        raise RemoteProtocolError("malformed identify message") from exc
    if msg.public_key is not None:
        try:
            raw = decode_public_key_proto(msg.public_key)
        except InvalidPublicKeyError:
            raw = None  # a key type we do not support: the peer id already authenticates
        if raw is not None and PeerId.from_public_key(raw) != peer_id:
            raise RemoteProtocolError("identify announces the public key of another peer")
    addrs = tuple(a for a in (_multiaddr(r) for r in msg.listen_addrs) if a is not None)
    observed = _multiaddr(msg.observed_addr) if msg.observed_addr is not None else None
    return IdentifyInfo(
        peer_id=peer_id,
        protocol_version=msg.protocol_version,
        agent_version=msg.agent_version,
        listen_addrs=addrs,
        observed_addr=observed,
        protocols=msg.protocols,
    )


async def read_identify(stream: P2PStream) -> IdentifyInfo:
    """Read the peer's Identify message from an outbound identify stream.

    Raises:
        RemoteProtocolError: malformed or oversized message.
        StreamError: the stream broke.
    """
    limit = MAX_IDENTIFY_SIZE + 10
    data = bytearray()
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            raise RemoteProtocolError("identify message too large", details={"limit": limit})
        header = None
        with contextlib.suppress(MalformedFrameError):
            header = decode_uvarint(data)
        if header is not None and header[0] > MAX_IDENTIFY_SIZE:
            # Refuse the announcement itself rather than buffer up to the limit first.
            raise RemoteProtocolError(
                "identify message too large",
                details={"size": header[0], "limit": MAX_IDENTIFY_SIZE},
            )
        if header is not None and len(data) - header[1] >= header[0]:
            break  # the whole prefixed message arrived; no need to wait for EOF
    return decode_identify_response(bytes(data), stream.remote_peer)


async def write_identify(stream: P2PStream, message: bytes) -> None:
    """Answer an inbound identify stream: write our message and close."""
    await stream.write(message)
    await stream.close_write()
