"""The built-in handshake core (sans-IO): message parsing and the state machine."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.crypto.identity import Identity
from engine.errors import (
    GlueberryError,
    HandshakeError,
    InvalidPublicKeyError,
    LocalProtocolError,
    PeerIdMismatchError,
    RemoteProtocolError,
)
from engine.handshake import (
    AutoHandshake,
    Complete,
    Failed,
    Finalize,
    HandshakePhase,
    Hello,
    Prepare,
    parse_message,
    stream_protocol,
)


def make_pair(
    a_streams: tuple[str, ...] = ("chat",), b_streams: tuple[str, ...] = ("files",)
) -> tuple[Identity, Identity, AutoHandshake, AutoHandshake]:
    a, b = Identity.generate(), Identity.generate()
    ha = AutoHandshake(local_public_key=a.public_key, peer_id=b.peer_id, streams=a_streams)
    hb = AutoHandshake(local_public_key=b.public_key, peer_id=a.peer_id, streams=b_streams)
    return a, b, ha, hb


def test_full_exchange_prepares_union_and_finalizes_both_sides() -> None:
    a, b, ha, hb = make_pair()
    hello_a, hello_b = ha.start(), hb.start()
    [prep_a] = ha.receive(hello_b)
    [prep_b] = hb.receive(hello_a)
    assert isinstance(prep_a, Prepare)
    assert isinstance(prep_b, Prepare)
    assert prep_a.public_key == b.public_key
    assert prep_b.public_key == a.public_key
    assert set(prep_a.streams) == set(prep_b.streams) == {"chat", "files"}
    complete_a, complete_b = ha.prepared(), hb.prepared()
    assert ha.receive(complete_b) == [Finalize()]
    assert hb.receive(complete_a) == [Finalize()]
    assert ha.phase is hb.phase is HandshakePhase.DONE


def test_key_not_matching_peer_id_fails_with_abort() -> None:
    a, b = Identity.generate(), Identity.generate()
    mallory = Identity.generate()
    ha = AutoHandshake(local_public_key=a.public_key, peer_id=b.peer_id, streams=["x"])
    ha.start()
    forged = Hello(1, mallory.public_key, ("wire-v1",), ("x",)).serialize()
    [action] = ha.receive(forged)
    assert isinstance(action, Failed)
    assert isinstance(action.error, PeerIdMismatchError)
    assert action.abort is not None
    assert b"peer_id_mismatch" in action.abort
    assert ha.phase is HandshakePhase.FAILED
    assert ha.receive(Complete().serialize()) == []  # failed for good


def test_complete_before_hello_is_a_protocol_error() -> None:
    _, _, ha, _ = make_pair()
    ha.start()
    [action] = ha.receive(Complete().serialize())
    assert isinstance(action, Failed)
    assert isinstance(action.error, RemoteProtocolError)


def test_complete_before_our_prepare_is_rejected() -> None:
    _, _, ha, hb = make_pair()
    hello_b = hb.start()
    ha.start()
    ha.receive(hello_b)  # PREPARING: we have not called prepared() yet
    [action] = ha.receive(Complete().serialize())
    assert isinstance(action, Failed)


def test_unsupported_version_and_missing_wire_v1() -> None:
    a, b = Identity.generate(), Identity.generate()
    for hello in (
        Hello(2, b.public_key, ("wire-v1",), ()),
        Hello(1, b.public_key, ("wire-v2",), ()),
    ):
        ha = AutoHandshake(local_public_key=a.public_key, peer_id=b.peer_id, streams=())
        ha.start()
        [action] = ha.receive(hello.serialize())
        assert isinstance(action, Failed)
        assert isinstance(action.error, HandshakeError)


def test_peer_abort_is_reported_without_answering() -> None:
    _, _, ha, _ = make_pair()
    ha.start()
    [action] = ha.receive(b'{"type":"abort","reason":"nope"}')
    assert isinstance(action, Failed)
    assert action.abort is None
    assert "nope" in str(action.error)


def test_start_twice_and_prepared_out_of_order_are_local_errors() -> None:
    _, _, ha, _ = make_pair()
    with pytest.raises(LocalProtocolError):
        ha.prepared()
    ha.start()
    with pytest.raises(LocalProtocolError):
        ha.start()


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"\xff\xfe", RemoteProtocolError),
        (b"[]", RemoteProtocolError),
        (b'{"type":"nope"}', RemoteProtocolError),
        (b'{"type":"hello","version":true,"public_key":""}', RemoteProtocolError),
        (b'{"type":"hello","version":1,"public_key":"!!"}', RemoteProtocolError),
        (b'{"type":"hello","version":1,"public_key":"AAAA"}', InvalidPublicKeyError),
        (
            json.dumps(
                {
                    "type": "hello",
                    "version": 1,
                    "public_key": base64.b64encode(bytes(32)).decode(),
                    "streams": ["bad/name"],
                }
            ).encode(),
            RemoteProtocolError,
        ),
        (
            json.dumps(
                {
                    "type": "hello",
                    "version": 1,
                    "public_key": base64.b64encode(bytes(32)).decode(),
                    "capabilities": ["x"] * 100,
                }
            ).encode(),
            RemoteProtocolError,
        ),
    ],
)
def test_parse_rejects_bad_messages(payload: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_message(payload)


@given(st.binary(max_size=512))
def test_core_never_raises_on_arbitrary_input(data: bytes) -> None:
    _, _, ha, _ = make_pair()
    ha.start()
    for action in ha.receive(data):
        assert isinstance(action, (Prepare, Failed))
        if isinstance(action, Failed):
            assert isinstance(action.error, GlueberryError)


def test_hello_roundtrip_and_stream_protocol() -> None:
    key = Identity.generate().public_key
    hello = Hello(1, key, ("wire-v1", "x"), ("a", "b-1"))
    assert parse_message(hello.serialize()) == hello
    assert stream_protocol("chat") == "/glueberry/stream/chat/1.0.0"
