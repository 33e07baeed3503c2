"""identify message building/decoding (prefixed and bare) and key checks."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multiaddr import Multiaddr

from engine.crypto.identity import Identity, encode_public_key_proto
from engine.errors import RemoteProtocolError
from engine.net.identify import PROTOCOL_VERSION, build_identify, decode_identify_response
from engine.net.protobuf import IdentifyMessage
from engine.varint import decode_uvarint

ME = Identity.generate()


def test_build_and_decode_round_trip() -> None:
    data = build_identify(
        public_key=ME.public_key,
        agent_version="glueberry-py/test",
        listen_addrs=[Multiaddr("/ip4/127.0.0.1/tcp/4001")],
        observed_addr=Multiaddr("/ip4/127.0.0.1/tcp/5555"),
        protocols=["/ipfs/id/1.0.0", "/x/1"],
    )
    header = decode_uvarint(data)
    assert header is not None
    assert header[0] == len(data) - header[1]  # one uvarint-prefixed message
    info = decode_identify_response(data, ME.peer_id)
    assert info.peer_id == ME.peer_id
    assert info.protocol_version == PROTOCOL_VERSION
    assert info.agent_version == "glueberry-py/test"
    assert [str(a) for a in info.listen_addrs] == ["/ip4/127.0.0.1/tcp/4001"]
    assert str(info.observed_addr) == "/ip4/127.0.0.1/tcp/5555"
    assert info.protocols == ("/ipfs/id/1.0.0", "/x/1")


def test_bare_message_is_accepted() -> None:
    bare = IdentifyMessage(agent_version="old-peer", protocols=("/a",)).serialize()
    info = decode_identify_response(bare, ME.peer_id)
    assert info.agent_version == "old-peer"


def test_key_of_another_peer_is_refused() -> None:
    other = Identity.generate()
    msg = IdentifyMessage(public_key=encode_public_key_proto(other.public_key)).serialize()
    with pytest.raises(RemoteProtocolError, match="another peer"):
        decode_identify_response(msg, ME.peer_id)


def test_unparsable_addresses_are_dropped() -> None:
    msg = IdentifyMessage(listen_addrs=(b"\xff\xff", bytes(Multiaddr("/ip4/1.2.3.4/tcp/1"))))
    info = decode_identify_response(msg.serialize(), ME.peer_id)
    assert [str(a) for a in info.listen_addrs] == ["/ip4/1.2.3.4/tcp/1"]


@given(st.binary(max_size=512))
def test_random_bytes_give_typed_errors_only(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode_identify_response(data, ME.peer_id)
