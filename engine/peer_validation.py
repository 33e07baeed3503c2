"""Validation of address-book and blacklist input, shared by every repository.

The in-memory repository (:mod:`engine.repository`) and the SQL repository
(``models.repository``) both call these functions *before* touching their storage, so a
bad input raises a typed error and nothing is half-written. Each function returns the
normalised value the repository stores.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from multiaddr import Multiaddr

from engine.crypto.identity import PeerId, decode_public_key_proto
from engine.errors import (
    InvalidBanTargetError,
    InvalidInputError,
    InvalidMultiaddrError,
    InvalidPeerIdError,
    InvalidPublicKeyError,
    MetadataTooLargeError,
)

__all__ = [
    "MAX_ADDRS_PER_PEER",
    "MAX_AUDIT_DETAIL_SIZE",
    "MAX_AUDIT_KIND_LENGTH",
    "MAX_BAN_REASON_LENGTH",
    "MAX_MULTIADDR_LENGTH",
    "BanKind",
    "check_audit_detail",
    "check_audit_kind",
    "check_ban_reason",
    "check_ban_target",
    "check_expires_at",
    "check_metadata",
    "check_multiaddrs",
    "check_peer_id",
    "check_public_key",
    "metadata_size",
]

MAX_ADDRS_PER_PEER = 64
"""Most multiaddrs one address-book entry may hold."""
MAX_MULTIADDR_LENGTH = 1024
"""Longest multiaddr text accepted (characters)."""
MAX_BAN_REASON_LENGTH = 1024
"""Longest blacklist reason (characters)."""
MAX_AUDIT_KIND_LENGTH = 64
"""Longest audit entry kind (characters)."""
MAX_AUDIT_DETAIL_SIZE = 16 * 1024
"""Largest JSON-encoded audit detail (bytes)."""

BanKind = Literal["peer", "cidr"]


def check_peer_id(peer_id: PeerId | str) -> PeerId:
    """Return ``peer_id`` as a :class:`PeerId`, parsing text.

    Raises:
        InvalidPeerIdError: not a valid Ed25519 libp2p peer id.
    """
    if isinstance(peer_id, PeerId):
        return peer_id
    if isinstance(peer_id, str):
        return PeerId.from_string(peer_id)
    raise InvalidPeerIdError(f"peer id must be a PeerId or a string, not {type(peer_id).__name__}")


def check_multiaddrs(addrs: Iterable[str], peer_id: PeerId | None = None) -> tuple[str, ...]:
    """Parse and normalise multiaddr texts; drop duplicates, keep order.

    Args:
        addrs: multiaddr texts (``/ip4/1.2.3.4/tcp/4001``, optionally ending ``/p2p/<id>``).
        peer_id: when given, a ``/p2p/<id>`` component must name this peer.

    Returns:
        The canonical texts (as printed by the ``multiaddr`` package), without duplicates.

    Raises:
        InvalidMultiaddrError: not a sequence of strings, too many, too long, unparsable,
            empty, or naming another peer.
    """
    if isinstance(addrs, str | bytes) or not isinstance(addrs, Iterable):
        raise InvalidMultiaddrError("addrs must be a list of multiaddr strings")
    out: list[str] = []
    seen: set[str] = set()
    for text in addrs:
        if not isinstance(text, str):
            raise InvalidMultiaddrError(f"multiaddr must be a string, not {type(text).__name__}")
        if not text or len(text) > MAX_MULTIADDR_LENGTH:
            raise InvalidMultiaddrError(
                f"multiaddr must be 1..{MAX_MULTIADDR_LENGTH} characters",
                details={"multiaddr": text[:128]},
            )
        try:
            parsed = Multiaddr(text)
            canonical = str(parsed)
            p2p = _p2p_value(parsed)
        except Exception as exc:  # the multiaddr package raises several exception types
            raise InvalidMultiaddrError(
                f"invalid multiaddr {text[:128]!r}: {exc}", details={"multiaddr": text[:128]}
            ) from None
        if not canonical:
            raise InvalidMultiaddrError("multiaddr is empty", details={"multiaddr": text[:128]})
        if p2p is not None and peer_id is not None and p2p != peer_id.to_string():
            raise InvalidMultiaddrError(
                f"multiaddr {text[:128]!r} names another peer",
                details={"multiaddr": text[:128], "peer_id": peer_id.to_string()},
            )
        if canonical not in seen:
            seen.add(canonical)
            out.append(canonical)
    if len(out) > MAX_ADDRS_PER_PEER:
        raise InvalidMultiaddrError(
            f"at most {MAX_ADDRS_PER_PEER} multiaddrs per peer, got {len(out)}",
            details={"count": len(out), "limit": MAX_ADDRS_PER_PEER},
        )
    return tuple(out)


def _p2p_value(addr: Multiaddr) -> str | None:
    for proto in addr.protocols():
        if proto.name in ("p2p", "ipfs"):
            value: str = addr.value_for_protocol(proto.code)
            return value
    return None


def metadata_size(metadata: Mapping[str, str]) -> int:
    """Size in bytes of the compact UTF-8 JSON encoding of ``metadata``."""
    return len(
        json.dumps(metadata, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
    )


def check_metadata(metadata: Mapping[str, str] | None, max_size: int) -> dict[str, str]:
    """Check peer metadata: a ``str -> str`` mapping whose JSON encoding fits ``max_size``.

    Args:
        metadata: the mapping, or ``None`` for empty.
        max_size: the limit in bytes (``Config.max_metadata_size``).

    Returns:
        A plain ``dict`` copy.

    Raises:
        InvalidInputError: not a mapping of strings to strings.
        MetadataTooLargeError: the JSON encoding is larger than ``max_size`` bytes.
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidInputError("metadata must be an object of string values")
    out: dict[str, str] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidInputError("metadata keys and values must be strings")
        out[key] = value
    size = metadata_size(out)
    if size > max_size:
        raise MetadataTooLargeError(
            f"metadata is {size} bytes of JSON, the limit is {max_size}",
            details={"size": size, "limit": max_size},
        )
    return out


def check_public_key(public_key: bytes | None, peer_id: PeerId) -> bytes | None:
    """Check a peer's public key against its peer id; return the raw 32-byte key.

    Accepts the raw 32-byte Ed25519 key or the libp2p ``PublicKey`` protobuf (36 bytes).
    An Ed25519 peer id embeds the key, so a key that differs is refused.

    Raises:
        InvalidPublicKeyError: malformed, or not the key of ``peer_id``.
    """
    if public_key is None:
        return None
    if not isinstance(public_key, bytes | bytearray | memoryview):
        raise InvalidPublicKeyError("public key must be bytes")
    raw = bytes(public_key)
    if len(raw) != 32:
        raw = decode_public_key_proto(raw)
    if raw != peer_id.public_key:
        raise InvalidPublicKeyError(
            "public key does not match the peer id", details={"peer_id": peer_id.to_string()}
        )
    return raw


def check_ban_target(target: str) -> tuple[str, BanKind]:
    """Classify and normalise a blacklist target.

    Args:
        target: a peer id (``12D3KooW...``), an IP address or a CIDR network.

    Returns:
        ``(normalised text, kind)``: the peer id text, or the network in CIDR form with
        host bits cleared (``10.1.2.3/8`` -> ``10.0.0.0/8``, ``::1`` -> ``::1/128``).

    Raises:
        InvalidBanTargetError: neither a peer id nor an IP network.
    """
    if not isinstance(target, str) or not 0 < len(target) <= 128:
        raise InvalidBanTargetError("ban target must be a peer id or a CIDR of 1..128 characters")
    text = target.strip()
    try:
        return PeerId.from_string(text).to_string(), "peer"
    except InvalidPeerIdError:
        pass
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidBanTargetError(
            f"ban target {text[:64]!r} is neither a peer id nor an IP address / CIDR",
            details={"target": text[:64]},
        ) from None
    return network.with_prefixlen, "cidr"


def check_ban_reason(reason: str) -> str:
    """Check a blacklist reason (at most :data:`MAX_BAN_REASON_LENGTH` characters).

    Raises:
        InvalidInputError: not a string, or too long.
    """
    if not isinstance(reason, str) or len(reason) > MAX_BAN_REASON_LENGTH:
        raise InvalidInputError(f"ban reason must be a string of at most {MAX_BAN_REASON_LENGTH}")
    return reason


def check_expires_at(expires_at: float | None) -> float | None:
    """Check an optional expiry time (epoch seconds, finite, positive).

    Raises:
        InvalidInputError: not a finite positive number.
    """
    if expires_at is None:
        return None
    if isinstance(expires_at, bool) or not isinstance(expires_at, int | float):
        raise InvalidInputError("expires_at must be epoch seconds")
    value = float(expires_at)
    if not 0 < value < 1e11:
        raise InvalidInputError("expires_at must be positive epoch seconds")
    return value


def check_audit_kind(kind: str) -> str:
    """Check an audit entry kind (``handshake_failed``, ``ban_added``, ...).

    Raises:
        InvalidInputError: empty, too long, or not a string.
    """
    if not isinstance(kind, str) or not 0 < len(kind) <= MAX_AUDIT_KIND_LENGTH:
        raise InvalidInputError(f"audit kind must be 1..{MAX_AUDIT_KIND_LENGTH} characters")
    return kind


def check_audit_detail(detail: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check an audit detail: a JSON-serialisable mapping of bounded size.

    Raises:
        InvalidInputError: not JSON-serialisable, or larger than MAX_AUDIT_DETAIL_SIZE.
    """
    if detail is None:
        return {}
    if not isinstance(detail, Mapping):
        raise InvalidInputError("audit detail must be a mapping")
    out = dict(detail)
    try:
        encoded = json.dumps(out, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"audit detail is not JSON-serialisable: {exc}") from None
    except RecursionError:
        raise InvalidInputError("audit detail is nested too deeply") from None
    if len(encoded.encode()) > MAX_AUDIT_DETAIL_SIZE:
        raise InvalidInputError(f"audit detail exceeds {MAX_AUDIT_DETAIL_SIZE} bytes of JSON")
    result: dict[str, Any] = json.loads(encoded)  # a deep, JSON-clean copy
    return result
