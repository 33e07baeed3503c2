"""Edge validators against arbitrary input: only typed GlueberryError subclasses come out.

The wire parsers (framing, varint, Noise, yamux, multistream, protobuf, identify, the
handshake JSON) have random-input tests next to their unit tests; these cover the
validators that see text from HTTP bodies, CLI arguments, imported files and peers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.crypto.identity import PeerId, decode_public_key_proto
from engine.errors import GlueberryError
from engine.peer_validation import (
    check_ban_reason,
    check_ban_target,
    check_expires_at,
    check_metadata,
    check_multiaddrs,
    check_peer_id,
)

_PEER = PeerId.from_string("12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA")

# Text shaped like what the validators expect, plus noise.
multiaddr_like = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda parts: "/" + "/".join(parts),
        st.lists(
            st.one_of(
                st.sampled_from(
                    ["ip4", "ip6", "tcp", "udp", "p2p", "dns4", "quic-v1", "ipfs", "unix"]
                ),
                st.text(alphabet="0123456789abcdef.:%", max_size=20),
                st.just(str(_PEER)),
            ),
            max_size=8,
        ),
    ),
)


def _typed_only(fn: Callable[[], Any]) -> None:
    with contextlib.suppress(GlueberryError):
        fn()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(addrs=st.lists(multiaddr_like, max_size=5), with_peer=st.booleans())
def test_check_multiaddrs(addrs: list[str], with_peer: bool) -> None:
    _typed_only(lambda: check_multiaddrs(addrs, _PEER if with_peer else None))


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=200), st.from_regex(r"12D3KooW[1-9A-Za-z]{0,60}")))
def test_peer_ids_and_ban_targets(text: str) -> None:
    _typed_only(lambda: check_peer_id(text))
    _typed_only(lambda: PeerId.from_string(text))
    _typed_only(lambda: check_ban_target(text))
    _typed_only(lambda: check_ban_reason(text))


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=80))
def test_binary_peer_ids_and_keys(raw: bytes) -> None:
    _typed_only(lambda: PeerId.from_bytes(raw))
    _typed_only(lambda: decode_public_key_proto(raw))


@settings(max_examples=200, deadline=None)
@given(
    metadata=st.one_of(
        st.dictionaries(st.text(max_size=20), st.text(max_size=50), max_size=10),
        st.dictionaries(st.text(max_size=5), st.integers() | st.none() | st.binary(), max_size=3),
        st.lists(st.text(max_size=5), max_size=3),
        st.text(max_size=10),
    ),
    expires=st.one_of(st.none(), st.floats(allow_nan=True), st.integers(), st.text(max_size=5)),
)
def test_metadata_and_expiry(metadata: Any, expires: Any) -> None:
    _typed_only(lambda: check_metadata(metadata, 256))
    _typed_only(lambda: check_expires_at(expires))


@pytest.mark.parametrize("depth", [10, 5000])
def test_deep_structures_in_metadata_and_audit(depth: int) -> None:
    from engine.peer_validation import check_audit_detail

    nested: Any = "x"
    for _ in range(depth):
        nested = [nested]
    _typed_only(lambda: check_audit_detail({"a": nested}))
    _typed_only(lambda: check_metadata({"a": nested}, 256))
