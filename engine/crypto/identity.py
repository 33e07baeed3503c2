"""Ed25519 identities and libp2p peer ids.

A peer id is the identity multihash (code 0x00) of the protobuf-encoded public key
``PublicKey{Type=Ed25519(1), Data=<32 bytes>}``, rendered in base58btc (``12D3KooW...``).
Identity key files hold the libp2p protobuf-encoded *private* key (type 1, data =
seed || public key, 64 bytes), the format go-libp2p writes; files with data = seed alone
(32 bytes, as py-libp2p writes them) are read too. Key files are created
0600 and refused when group- or world-readable.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import base58
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from engine.crypto.secret import SecretBytes, scrub_bytes, secure_zero
from engine.errors import (
    CryptoError,
    InsecureKeyFileError,
    InvalidPeerIdError,
    InvalidPublicKeyError,
    KeyFileError,
)

__all__ = ["Identity", "PeerId", "decode_public_key_proto", "encode_public_key_proto"]

_KEY_TYPE_ED25519 = 1
_ED25519_LEN = 32
# Header of PublicKey{Type: 1, Data: <32 bytes>}: field 1 varint 1, field 2 len 32.
_PUBKEY_PROTO_PREFIX = bytes([0x08, _KEY_TYPE_ED25519, 0x12, _ED25519_LEN])
# Header of PrivateKey{Type: 1, Data: <64 bytes>}.
_PRIVKEY_PROTO_PREFIX = bytes([0x08, _KEY_TYPE_ED25519, 0x12, 64])
# Header of PrivateKey{Type: 1, Data: <32-byte seed>} (py-libp2p's serialisation).
_SEED_PROTO_PREFIX = bytes([0x08, _KEY_TYPE_ED25519, 0x12, _ED25519_LEN])
_MAX_KEY_FILE = 256
# Identity multihash of a 36-byte key: code 0x00, length 0x24.
_MULTIHASH_PREFIX = bytes([0x00, len(_PUBKEY_PROTO_PREFIX) + _ED25519_LEN])
_MAX_PEER_ID_TEXT = 128


def encode_public_key_proto(raw: bytes) -> bytes:
    """Encode a raw 32-byte Ed25519 public key as a libp2p ``PublicKey`` protobuf."""
    if len(raw) != _ED25519_LEN:
        raise InvalidPublicKeyError(f"Ed25519 public key must be 32 bytes, got {len(raw)}")
    return _PUBKEY_PROTO_PREFIX + raw


def decode_public_key_proto(data: bytes) -> bytes:
    """Decode a libp2p ``PublicKey`` protobuf holding an Ed25519 key; return the raw key.

    Raises:
        InvalidPublicKeyError: not a canonical Ed25519 ``PublicKey`` message.
    """
    # Only the canonical encoding is accepted: peer ids are derived from these exact bytes,
    # so two encodings of one key would give two identities.
    if len(data) != len(_PUBKEY_PROTO_PREFIX) + _ED25519_LEN or not data.startswith(
        _PUBKEY_PROTO_PREFIX
    ):
        raise InvalidPublicKeyError("not a canonical libp2p Ed25519 PublicKey")
    raw = data[len(_PUBKEY_PROTO_PREFIX) :]
    try:
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:  # pragma: no cover - every 32-byte string loads
        raise InvalidPublicKeyError("invalid Ed25519 public key") from exc
    return raw


@dataclass(frozen=True, slots=True)
class PeerId:
    """A libp2p peer id for an Ed25519 key (identity multihash of the public key proto)."""

    multihash: bytes
    # The base58 text, computed once: peer ids are rendered on hot paths (every received
    # message handed to the gateway), and base58 encoding costs several microseconds.
    _text: str | None = field(default=None, compare=False, hash=False, repr=False)

    @classmethod
    def from_public_key(cls, raw: bytes) -> PeerId:
        """Peer id of a raw 32-byte Ed25519 public key."""
        return cls(_MULTIHASH_PREFIX + encode_public_key_proto(raw))

    @classmethod
    def from_string(cls, text: str) -> PeerId:
        """Parse a base58btc peer id (``12D3KooW...``).

        Raises:
            InvalidPeerIdError: not base58, not an identity multihash of an Ed25519 key.
        """
        if not isinstance(text, str) or not 0 < len(text) <= _MAX_PEER_ID_TEXT:
            raise InvalidPeerIdError("peer id must be a non-empty string of at most 128 chars")
        if text != text.strip():
            # base58's decoder strips trailing white space; a peer id is exact text.
            raise InvalidPeerIdError(f"peer id has surrounding white space: {text[:64]!r}")
        try:
            raw = base58.b58decode(text)
        except ValueError as exc:
            raise InvalidPeerIdError(f"peer id is not base58btc: {text[:64]!r}") from exc
        peer = cls.from_bytes(raw, text=text)
        # base58 has one spelling per byte string, so the text parsed is the text form:
        # keep it, sparing a base58 encode whenever this peer id is rendered.
        object.__setattr__(peer, "_text", text)
        return peer

    @classmethod
    def from_bytes(cls, raw: bytes, *, text: str | None = None) -> PeerId:
        """Parse a binary peer id (the multihash bytes).

        Raises:
            InvalidPeerIdError: not an identity multihash of a canonical Ed25519 key.
        """
        shown = text if text is not None else raw[:48].hex()
        if not raw.startswith(_MULTIHASH_PREFIX) or len(raw) != len(_MULTIHASH_PREFIX) + 36:
            raise InvalidPeerIdError(
                f"not an Ed25519 libp2p peer id (identity multihash): {shown[:64]!r}"
            )
        try:
            decode_public_key_proto(raw[len(_MULTIHASH_PREFIX) :])
        except InvalidPublicKeyError as exc:
            raise InvalidPeerIdError(f"peer id holds no valid Ed25519 key: {shown[:64]!r}") from exc
        return cls(bytes(raw))

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key embedded in this peer id."""
        return self.multihash[-_ED25519_LEN:]

    def verify(self, signature: bytes, data: bytes) -> bool:
        """Check an Ed25519 signature made by this peer's key."""
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, data)
        except (InvalidSignature, ValueError):
            return False
        return True

    def to_string(self) -> str:
        """The base58btc text form."""
        text = self._text
        if text is None:
            text = base58.b58encode(self.multihash).decode("ascii")
            object.__setattr__(self, "_text", text)
        return text

    def __str__(self) -> str:
        return self.to_string()

    def __repr__(self) -> str:
        return f"PeerId({self.to_string()!r})"


class Identity:
    """A node's Ed25519 identity: the private key (held in :class:`SecretBytes`) and peer id.

    Use :meth:`generate`, :meth:`from_seed`, :meth:`load` or :meth:`load_or_create`.
    ``close()`` zeroes the seed copy we hold and drops the OpenSSL key object (which
    clears its own copy when it is garbage collected; see docs/security.md); signing is
    refused afterwards. An identity is a context manager.
    """

    __slots__ = ("_key", "_public", "_seed", "peer_id")

    def __init__(self, seed: bytes | bytearray | SecretBytes) -> None:
        self._seed = seed if isinstance(seed, SecretBytes) else SecretBytes(seed)
        if len(self._seed) != _ED25519_LEN:
            raise KeyFileError("Ed25519 seed must be 32 bytes")
        with self._seed.view() as view:
            key = Ed25519PrivateKey.from_private_bytes(view)
        self._key: Ed25519PrivateKey | None = key
        self._public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.peer_id = PeerId.from_public_key(self._public)

    @classmethod
    def generate(cls) -> Identity:
        """A fresh random identity."""
        raw = os.urandom(_ED25519_LEN)
        seed = SecretBytes(raw)
        scrub_bytes(raw)
        return cls(seed)

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """An identity from a 32-byte Ed25519 seed (RFC 8032 secret key)."""
        return cls(SecretBytes(seed))

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return self._public

    @property
    def seed(self) -> SecretBytes:
        """The 32-byte private seed (a secret; do not log or copy it)."""
        return self._seed

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._key is None

    def sign(self, data: bytes) -> bytes:
        """Ed25519 signature of ``data``.

        Raises:
            CryptoError: the identity was closed.
        """
        key = self._key
        if key is None:
            raise CryptoError("identity was closed")
        return key.sign(data)

    def close(self) -> None:
        """Zero the seed copy held by this identity and drop the signing key. Idempotent."""
        self._key = None
        self._seed.close()

    def __enter__(self) -> Identity:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Identity {self.peer_id}{' closed' if self._key is None else ''}>"

    # -- key files ---------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the key (libp2p protobuf PrivateKey) to ``path``, mode 0600, atomically.

        Raises:
            KeyFileError: the file cannot be written.
        """
        target = Path(path)
        tmp = target.with_name(f".{target.name}.tmp")
        buf = bytearray(_PRIVKEY_PROTO_PREFIX)
        try:
            with self._seed.view() as view:
                buf += view
            buf += self._public
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # O_EXCL | 0600 from the start: the key is never on disk with wider rights.
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, buf)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except OSError as exc:
            raise KeyFileError(f"cannot write identity key file {target}: {exc.strerror}") from exc
        finally:
            secure_zero(buf)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Identity:
        """Read a key file written by :meth:`save` (or by go/py-libp2p).

        Raises:
            InsecureKeyFileError: the file is group- or world-accessible.
            KeyFileError: the file is missing, unreadable or malformed.
        """
        target = Path(path)
        try:
            fd = os.open(target, os.O_RDONLY)
        except OSError as exc:
            raise KeyFileError(f"cannot open identity key file {target}: {exc.strerror}") from exc
        try:
            mode = os.fstat(fd).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise InsecureKeyFileError(
                    f"identity key file {target} has mode {stat.S_IMODE(mode):04o}; "
                    f"it must not be accessible by group or others (run: chmod 600 {target})",
                    details={"path": str(target), "mode": f"{stat.S_IMODE(mode):04o}"},
                )
            # Read straight into a buffer we can zero (os.read would return immutable bytes).
            data = bytearray(_MAX_KEY_FILE + 1)
            try:
                size = os.readv(fd, [data])
            except OSError as exc:
                secure_zero(data)
                raise KeyFileError(
                    f"cannot read identity key file {target}: {exc.strerror}"
                ) from exc
        finally:
            os.close(fd)
        try:
            body = len(_PRIVKEY_PROTO_PREFIX)
            if size == body + 2 * _ED25519_LEN and data.startswith(_PRIVKEY_PROTO_PREFIX):
                stored_public: bytes | None = bytes(data[body + _ED25519_LEN : size])
            elif size == body + _ED25519_LEN and data.startswith(_SEED_PROTO_PREFIX):
                stored_public = None
            else:
                raise KeyFileError(f"identity key file {target} is not an Ed25519 libp2p key")
            ident = cls(SecretBytes(data[body : body + _ED25519_LEN]))
            if stored_public is not None and ident.public_key != stored_public:
                ident.close()
                raise KeyFileError(f"identity key file {target} is corrupt (public key mismatch)")
            return ident
        finally:
            secure_zero(data)

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str]) -> Identity:
        """Load the key at ``path``, creating a new one (0600) when the file does not exist."""
        target = Path(path)
        if target.exists():
            return cls.load(target)
        ident = cls.generate()
        ident.save(target)
        return ident
