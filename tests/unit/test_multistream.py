"""multistream-select 1.0: sans-IO dialer/listener, limits, leftovers, fuzz."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import NegotiationError
from engine.net.multistream import (
    MULTISTREAM_PROTOCOL_ID,
    MultistreamDialer,
    MultistreamListener,
    dial_select,
    encode_line,
    listen_select,
)

HEADER = encode_line(MULTISTREAM_PROTOCOL_ID)


def test_encode_line_matches_the_spec_bytes() -> None:
    # "\x13/multistream/1.0.0\n": 19 = len("/multistream/1.0.0\n")
    assert HEADER == b"\x13/multistream/1.0.0\n"
    assert encode_line("na") == b"\x03na\n"


def run_pair(dialer: MultistreamDialer, listener: MultistreamListener) -> None:
    """Shuttle bytes between the two until both are done (bounded)."""
    for _ in range(64):
        out = dialer.data_to_send()
        if out:
            listener.receive_data(out)
        back = listener.data_to_send()
        if back:
            dialer.receive_data(back)
        if dialer.done and listener.done and not out and not back:
            return
    raise AssertionError("negotiation did not converge")


def test_dialer_pipelines_header_and_first_protocol() -> None:
    dialer = MultistreamDialer(["/noise"])
    assert dialer.data_to_send() == HEADER + encode_line("/noise")
    assert dialer.data_to_send() == b""


def test_pair_agrees_on_first_supported_protocol() -> None:
    dialer = MultistreamDialer(["/tls/1.0.0", "/noise"])
    listener = MultistreamListener({"/noise", "/yamux/1.0.0"})
    run_pair(dialer, listener)
    assert dialer.protocol == listener.protocol == "/noise"
    assert dialer.leftover == listener.leftover == b""


def test_listener_answers_header_and_echo_in_one_flight() -> None:
    listener = MultistreamListener({"/noise"})
    listener.receive_data(HEADER + encode_line("/noise"))
    assert listener.done
    assert listener.data_to_send() == HEADER + encode_line("/noise")


def test_na_for_every_protocol_fails_the_dialer() -> None:
    dialer = MultistreamDialer(["/a", "/b"])
    dialer.data_to_send()
    dialer.receive_data(HEADER + encode_line("na"))
    assert dialer.data_to_send() == encode_line("/b")
    with pytest.raises(NegotiationError):
        dialer.receive_data(encode_line("na"))
    with pytest.raises(NegotiationError):  # a failed dialer stays failed
        dialer.receive_data(b"")


def test_pipelined_data_after_protocol_line_is_leftover() -> None:
    listener = MultistreamListener({"/echo"})
    listener.receive_data(HEADER + encode_line("/echo") + b"hello")
    assert listener.done
    assert listener.leftover == b"hello"
    listener.receive_data(b" world")
    assert listener.leftover == b"hello world"

    dialer = MultistreamDialer(["/echo"])
    dialer.receive_data(HEADER + encode_line("/echo") + b"\x00\x01data")
    assert dialer.done
    assert dialer.leftover == b"\x00\x01data"


def test_byte_by_byte_delivery() -> None:
    listener = MultistreamListener({"/x"})
    for b in HEADER + encode_line("/x") + b"tail":
        listener.receive_data(bytes([b]))
    assert listener.protocol == "/x"
    assert listener.leftover == b"tail"


def test_wrong_header_is_refused() -> None:
    with pytest.raises(NegotiationError):
        MultistreamListener({"/x"}).receive_data(encode_line("/multistream/2.0.0"))
    dialer = MultistreamDialer(["/x"])
    with pytest.raises(NegotiationError):
        dialer.receive_data(encode_line("/x"))


def test_unexpected_answer_is_refused() -> None:
    dialer = MultistreamDialer(["/x"])
    with pytest.raises(NegotiationError):
        dialer.receive_data(HEADER + encode_line("/y"))


def test_line_length_is_bounded() -> None:
    listener = MultistreamListener({"/x"}, max_line_length=64)
    listener.receive_data(HEADER)
    with pytest.raises(NegotiationError) as info:
        # only the length prefix is needed to refuse: no 1 MiB buffered
        listener.receive_data(b"\x80\x80\x40")
    assert info.value.details["limit"] == 64


def test_line_without_newline_is_refused() -> None:
    listener = MultistreamListener({"/x"})
    with pytest.raises(NegotiationError):
        listener.receive_data(b"\x02/x")


def test_too_many_proposals_are_refused() -> None:
    listener = MultistreamListener({"/x"}, max_proposals=3)
    listener.receive_data(HEADER)
    for i in range(3):
        listener.receive_data(encode_line(f"/nope/{i}"))
        assert listener.data_to_send().endswith(encode_line("na"))
    with pytest.raises(NegotiationError):
        listener.receive_data(encode_line("/nope/4"))


def test_ls_lists_supported_protocols() -> None:
    listener = MultistreamListener({"/b", "/a"})
    listener.receive_data(HEADER + encode_line("ls"))
    out = listener.data_to_send()
    body = encode_line("/a") + encode_line("/b") + b"\n"
    assert out == HEADER + bytes([len(body)]) + body
    assert not listener.done


def test_na_is_never_selected_even_if_registered() -> None:
    listener = MultistreamListener({"na"})
    listener.receive_data(HEADER + encode_line("na"))
    assert not listener.done


def test_invalid_dialer_arguments() -> None:
    with pytest.raises(ValueError, match="at least one"):
        MultistreamDialer([])
    with pytest.raises(ValueError, match="invalid"):
        MultistreamDialer(["bad\nid"])


@given(st.binary(max_size=2048))
def test_random_bytes_give_typed_errors_only_listener(data: bytes) -> None:
    listener = MultistreamListener({"/x"})
    with contextlib.suppress(NegotiationError):
        listener.receive_data(data)


@given(st.binary(max_size=2048))
def test_random_bytes_give_typed_errors_only_dialer(data: bytes) -> None:
    dialer = MultistreamDialer(["/x", "/y"])
    with contextlib.suppress(NegotiationError):
        dialer.receive_data(data)


@given(st.integers(min_value=0, max_value=len(HEADER + encode_line("/x")) - 1))
def test_truncated_negotiation_is_incomplete_not_an_error(cut: int) -> None:
    listener = MultistreamListener({"/x"})
    listener.receive_data((HEADER + encode_line("/x"))[:cut])
    assert not listener.done


async def test_async_drivers_over_a_pipe() -> None:
    import asyncio

    a_to_b: asyncio.Queue[bytes] = asyncio.Queue()
    b_to_a: asyncio.Queue[bytes] = asyncio.Queue()

    async def a_write(data: bytes) -> None:
        await a_to_b.put(data)

    async def b_write(data: bytes) -> None:
        if data.endswith(encode_line("/echo")):  # the listener pipelines data too
            data += b"early-data"
        await b_to_a.put(data)

    dialer = asyncio.create_task(dial_select(b_to_a.get, a_write, ["/nope", "/echo"]))
    listener = asyncio.create_task(listen_select(a_to_b.get, b_write, {"/echo"}))
    (p1, left1), (p2, left2) = await asyncio.wait_for(asyncio.gather(dialer, listener), 5)
    assert p1 == p2 == "/echo"
    assert left2 == b""
    assert left1.startswith(b"early-data")


async def test_async_driver_eof_is_negotiation_error() -> None:
    async def read() -> bytes:
        return b""

    async def write(data: bytes) -> None:
        return None

    with pytest.raises(NegotiationError):
        await dial_select(read, write, ["/x"])
    with pytest.raises(NegotiationError):
        await listen_select(read, write, {"/x"})
