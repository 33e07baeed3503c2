"""The host's protocol table: exact ids are listed, families are accepted but unlisted."""

from __future__ import annotations

import pytest

from engine.net.interface import P2PStream
from engine.net.multistream import (
    MULTISTREAM_PROTOCOL_ID,
    MultistreamDialer,
    MultistreamListener,
    encode_line,
)
from engine.net.protocols import ProtocolTable

HEADER = encode_line(MULTISTREAM_PROTOCOL_ID)


async def exact(stream: P2PStream) -> None:
    return None


async def family(stream: P2PStream) -> None:
    return None


def table() -> ProtocolTable:
    t = ProtocolTable()
    t.set("/ipfs/id/1.0.0", exact)
    t.set_match("/secret/", lambda p: p.startswith("/secret/"), family)
    return t


def test_lookup_prefers_exact_then_family() -> None:
    t = table()
    assert t.lookup("/ipfs/id/1.0.0") is exact
    assert t.lookup("/secret/alpha/1.0.0") is family
    assert t.lookup("/other") is None
    t.set("/secret/alpha/1.0.0", exact)
    assert t.lookup("/secret/alpha/1.0.0") is exact


def test_families_are_accepted_but_never_listed() -> None:
    t = table()
    assert "/secret/alpha/1.0.0" in t
    assert "/other" not in t
    assert list(t) == ["/ipfs/id/1.0.0"]
    assert t.listed() == ["/ipfs/id/1.0.0"]
    assert len(t) == 1


def test_remove_match_and_remove() -> None:
    t = table()
    t.remove_match("/secret/")
    t.remove_match("/unknown/")
    assert "/secret/alpha/1.0.0" not in t
    t.remove("/ipfs/id/1.0.0")
    assert t.listed() == []


def test_a_raising_predicate_is_no_match() -> None:
    t = ProtocolTable()

    def boom(protocol_id: str) -> bool:
        raise RuntimeError("bug")

    t.set_match("/x/", boom, family)
    assert t.lookup("/x/1") is None


def test_invalid_ids_and_family_keys() -> None:
    t = ProtocolTable()
    with pytest.raises(ValueError, match="invalid protocol id"):
        t.set("", exact)
    with pytest.raises(ValueError, match="invalid protocol id"):
        t.set("/a\n", exact)
    with pytest.raises(ValueError, match="empty protocol family"):
        t.set_match("", lambda p: True, family)


def test_ls_omits_families_and_negotiation_accepts_them() -> None:
    listener = MultistreamListener(table())
    listener.receive_data(HEADER + encode_line("ls"))
    out = listener.data_to_send()
    body = encode_line("/ipfs/id/1.0.0") + b"\n"
    assert out == HEADER + bytes([len(body)]) + body
    assert b"secret" not in out

    dialer = MultistreamDialer(["/secret/alpha/1.0.0"])
    listener = MultistreamListener(table())
    listener.receive_data(dialer.data_to_send())
    dialer.receive_data(listener.data_to_send())
    assert listener.done
    assert dialer.done
    assert listener.protocol == dialer.protocol == "/secret/alpha/1.0.0"
