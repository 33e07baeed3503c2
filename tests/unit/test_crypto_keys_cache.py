"""The Ed25519 -> X25519 public conversion is cached per key (results and refusals)."""

from __future__ import annotations

import pytest

from engine.crypto import keys
from engine.crypto.identity import Identity
from engine.errors import InvalidPublicKeyError


def test_conversion_is_cached_and_equal_to_the_uncached_result() -> None:
    public = Identity.generate().public_key
    first = keys.ed25519_public_to_x25519(public)
    hits = keys._convert_public.cache_info().hits
    assert keys.ed25519_public_to_x25519(bytearray(public)) == first
    assert keys._convert_public.cache_info().hits == hits + 1
    # The cached value is the libsodium-equivalent conversion, computed afresh.
    keys._convert_public.cache_clear()
    assert keys.ed25519_public_to_x25519(public) == first


def test_a_refused_key_is_refused_every_time_with_a_fresh_error() -> None:
    identity_point = (1).to_bytes(32, "little")  # small order
    errors = []
    for _ in range(2):
        with pytest.raises(InvalidPublicKeyError, match="small order") as info:
            keys.ed25519_public_to_x25519(identity_point)
        errors.append(info.value)
    assert errors[0] is not errors[1]


def test_the_cache_is_bounded() -> None:
    assert keys._convert_public.cache_info().maxsize == 1024
