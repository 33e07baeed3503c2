"""Noise ``Noise_XX_25519_ChaChaPoly_SHA256`` with the libp2p handshake payload.

Written on the ``cryptography`` primitives (X25519, ChaCha20-Poly1305, HMAC-SHA256)
rather than the ``noiseprotocol`` package, which is unmaintained since 2020, pulls no
weight here (one pattern, one suite) and cannot be fed bytes without its own state
object; the Noise state machine below is ~150 lines and checked against the published
cacophony test vectors.

Layers, each sans-IO except the last:

- :class:`CipherState`, :class:`SymmetricState`, :class:`XXHandshakeState`: the Noise
  spec (revision 34) objects for the XX pattern; 64-bit little-endian counter nonces,
  nonce ``2**64 - 1`` never used.
- :class:`NoiseHandshake`: the libp2p handshake (noise spec of libp2p): empty prologue,
  2-byte big-endian length prefix on every handshake message, the
  ``NoiseHandshakePayload`` (identity key + Ed25519 signature over
  ``"noise-libp2p-static-key:" || static key``) sent in messages 2 and 3 and verified;
  the remote peer id is derived from the identity key and checked against the expected
  one (:class:`~engine.errors.PeerIdMismatchError`).
- :class:`NoiseTransport`: transport frames ``uint16_be(len) || ciphertext``, ciphertext
  at most 65,535 bytes (plaintext chunks of at most 65,519 bytes).
- :class:`NoiseChannel` (asyncio): the ``SecureChannel`` the muxer runs on:
  ``read() -> bytes`` (``b""`` only at end of stream), ``write(data)``, ``aclose()``.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import struct
from collections import deque
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from engine.crypto.identity import (
    Identity,
    PeerId,
    decode_public_key_proto,
    encode_public_key_proto,
)
from engine.errors import (
    ConnectionClosedError,
    DecryptionError,
    InvalidPublicKeyError,
    LocalProtocolError,
    MalformedFrameError,
    PeerIdMismatchError,
    SecurityHandshakeError,
)
from engine.net.protobuf import NoiseHandshakePayload

__all__ = [
    "MAX_NOISE_MESSAGE",
    "MAX_PLAINTEXT_CHUNK",
    "NOISE_PROTOCOL_ID",
    "CipherState",
    "NoiseChannel",
    "NoiseHandshake",
    "NoiseStaticKey",
    "NoiseTransport",
    "SymmetricState",
    "XXHandshakeState",
    "noise_handshake",
]

NOISE_PROTOCOL_ID = "/noise"
PROTOCOL_NAME = b"Noise_XX_25519_ChaChaPoly_SHA256"
SIGNATURE_PREFIX = b"noise-libp2p-static-key:"
MAX_NOISE_MESSAGE = 65_535
TAG_LEN = 16
MAX_PLAINTEXT_CHUNK = MAX_NOISE_MESSAGE - TAG_LEN
DH_LEN = 32
HASH_LEN = 32
_MAX_NONCE = 2**64 - 1
_LEN_PREFIX = struct.Struct(">H")
_READ_CHUNK = 256 * 1024
_CLOSE_TIMEOUT = 5.0


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha256")


def _hkdf2(chaining_key: bytes, ikm: bytes) -> tuple[bytes, bytes]:
    temp = _hmac(chaining_key, ikm)
    out1 = _hmac(temp, b"\x01")
    out2 = _hmac(temp, out1 + b"\x02")
    return out1, out2


def _public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _dh(private: X25519PrivateKey, public: bytes) -> bytes:
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError as exc:  # low-order point: all-zero shared secret
        raise SecurityHandshakeError("invalid X25519 public key in the Noise handshake") from exc
    if shared == bytes(DH_LEN):  # pragma: no cover - OpenSSL already refuses it
        raise SecurityHandshakeError("all-zero X25519 shared secret")
    return shared


class CipherState:
    """A Noise CipherState: ChaCha20-Poly1305 with a 64-bit counter nonce.

    Args:
        key: 32-byte key, or None for the empty state (encryption is the identity).
    """

    __slots__ = ("_aead", "n")

    def __init__(self, key: bytes | None = None) -> None:
        self._aead = ChaCha20Poly1305(key) if key is not None else None
        self.n = 0

    @property
    def has_key(self) -> bool:
        """Whether a key is set."""
        return self._aead is not None

    def _nonce(self) -> bytes:
        if self.n >= _MAX_NONCE:
            raise LocalProtocolError("Noise nonce exhausted; the connection must be closed")
        nonce = b"\x00\x00\x00\x00" + self.n.to_bytes(8, "little")
        self.n += 1
        return nonce

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes | memoryview) -> bytes:
        """Encrypt (or pass through when there is no key)."""
        if self._aead is None:
            return bytes(plaintext)
        return self._aead.encrypt(self._nonce(), plaintext, ad)

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes | memoryview) -> bytes:
        """Decrypt (or pass through when there is no key).

        Raises:
            DecryptionError: authentication failed; the nonce is not advanced then.
        """
        if self._aead is None:
            return bytes(ciphertext)
        if self.n >= _MAX_NONCE:
            raise LocalProtocolError("Noise nonce exhausted; the connection must be closed")
        nonce = b"\x00\x00\x00\x00" + self.n.to_bytes(8, "little")
        try:
            plaintext = self._aead.decrypt(nonce, ciphertext, ad)
        except InvalidTag as exc:
            raise DecryptionError("Noise message failed authentication") from exc
        self.n += 1
        return plaintext


class SymmetricState:
    """The Noise SymmetricState (SHA-256 hash, HMAC-SHA256 HKDF)."""

    __slots__ = ("cipher", "ck", "h")

    def __init__(self, protocol_name: bytes = PROTOCOL_NAME) -> None:
        if len(protocol_name) <= HASH_LEN:
            self.h = protocol_name.ljust(HASH_LEN, b"\x00")
        else:  # pragma: no cover - our name is exactly 32 bytes
            self.h = hashlib.sha256(protocol_name).digest()
        self.ck = self.h
        self.cipher = CipherState()

    def mix_hash(self, data: bytes) -> None:
        """h = SHA256(h || data)."""
        self.h = hashlib.sha256(self.h + data).digest()

    def mix_key(self, ikm: bytes) -> None:
        """ck, k = HKDF(ck, ikm)."""
        self.ck, key = _hkdf2(self.ck, ikm)
        self.cipher = CipherState(key)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        """Encrypt with h as associated data, then mix the ciphertext into h."""
        ciphertext = self.cipher.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        """Decrypt with h as associated data, then mix the ciphertext into h."""
        plaintext = self.cipher.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        """The two transport CipherStates (initiator->responder, responder->initiator)."""
        k1, k2 = _hkdf2(self.ck, b"")
        return CipherState(k1), CipherState(k2)


class XXHandshakeState:
    """The Noise XX handshake (``-> e``, ``<- e, ee, s, es``, ``-> s, se``), no I/O.

    Args:
        initiator: our role.
        static_key: our static X25519 key.
        prologue: bytes both sides must agree on (libp2p uses an empty prologue).
        ephemeral_key: fixed ephemeral key (test vectors only); random by default.
    """

    def __init__(
        self,
        *,
        initiator: bool,
        static_key: X25519PrivateKey,
        prologue: bytes = b"",
        ephemeral_key: X25519PrivateKey | None = None,
    ) -> None:
        self.initiator = initiator
        self._s = static_key
        self._s_pub = _public_bytes(static_key)
        self._e = ephemeral_key
        self._re: bytes | None = None
        self.remote_static: bytes | None = None
        self._sym = SymmetricState()
        self._sym.mix_hash(prologue)
        self._step = 0  # index of the next handshake message (0, 1, 2; 3 = done)

    @property
    def finished(self) -> bool:
        """Whether all three messages were processed."""
        return self._step >= 3

    @property
    def message_index(self) -> int:
        """Number of handshake messages written or read so far (0..3)."""
        return self._step

    @property
    def handshake_hash(self) -> bytes:
        """The handshake hash ``h`` (channel binding)."""
        return self._sym.h

    def _my_turn(self) -> bool:
        return (self._step % 2 == 0) == self.initiator

    def write_message(self, payload: bytes) -> bytes:
        """Produce the next handshake message carrying ``payload``.

        Raises:
            LocalProtocolError: not our turn, or the handshake is over.
        """
        if self.finished or not self._my_turn():
            raise LocalProtocolError("not our turn to write a Noise handshake message")
        sym = self._sym
        out = bytearray()
        if self._step == 0:
            self._e = self._e or X25519PrivateKey.generate()
            e_pub = _public_bytes(self._e)
            out += e_pub
            sym.mix_hash(e_pub)
        elif self._step == 1:
            assert self._re is not None
            self._e = self._e or X25519PrivateKey.generate()
            e_pub = _public_bytes(self._e)
            out += e_pub
            sym.mix_hash(e_pub)
            sym.mix_key(_dh(self._e, self._re))  # ee
            out += sym.encrypt_and_hash(self._s_pub)  # s
            sym.mix_key(_dh(self._s, self._re))  # es
        else:
            assert self._re is not None
            out += sym.encrypt_and_hash(self._s_pub)  # s
            sym.mix_key(_dh(self._s, self._re))  # se
        out += sym.encrypt_and_hash(payload)
        self._step += 1
        return bytes(out)

    def read_message(self, message: bytes) -> bytes:
        """Consume the peer's next handshake message; return its payload.

        Raises:
            SecurityHandshakeError: truncated message, bad key or failed authentication.
            LocalProtocolError: not the peer's turn.
        """
        if self.finished or self._my_turn():
            raise LocalProtocolError("not the peer's turn in the Noise handshake")
        sym = self._sym
        try:
            if self._step == 0:
                if len(message) < DH_LEN:
                    raise SecurityHandshakeError("Noise message 1 is truncated")
                self._re = message[:DH_LEN]
                sym.mix_hash(self._re)
                rest = message[DH_LEN:]
            elif self._step == 1:
                if len(message) < DH_LEN + DH_LEN + TAG_LEN + TAG_LEN:
                    raise SecurityHandshakeError("Noise message 2 is truncated")
                assert self._e is not None
                self._re = message[:DH_LEN]
                sym.mix_hash(self._re)
                sym.mix_key(_dh(self._e, self._re))  # ee
                rs_end = DH_LEN + DH_LEN + TAG_LEN
                self.remote_static = sym.decrypt_and_hash(message[DH_LEN:rs_end])  # s
                sym.mix_key(_dh(self._e, self.remote_static))  # es
                rest = message[rs_end:]
            else:
                if len(message) < DH_LEN + TAG_LEN + TAG_LEN:
                    raise SecurityHandshakeError("Noise message 3 is truncated")
                assert self._e is not None
                rs_end = DH_LEN + TAG_LEN
                self.remote_static = sym.decrypt_and_hash(message[:rs_end])  # s
                sym.mix_key(_dh(self._e, self.remote_static))  # se
                rest = message[rs_end:]
            payload = sym.decrypt_and_hash(rest)
        except DecryptionError as exc:
            raise SecurityHandshakeError("Noise handshake message failed authentication") from exc
        self._step += 1
        return payload

    def split(self) -> tuple[CipherState, CipherState]:
        """``(send, receive)`` CipherStates for our role, once finished.

        Raises:
            LocalProtocolError: the handshake is not finished.
        """
        if not self.finished:
            raise LocalProtocolError("Noise handshake not finished")
        c1, c2 = self._sym.split()
        return (c1, c2) if self.initiator else (c2, c1)


class NoiseStaticKey:
    """A host's Noise static key with its signed libp2p payload, built once per host.

    Args:
        identity: the host identity that signs the static key.
        static_key: the X25519 key (random by default).
    """

    __slots__ = ("payload", "private_key", "public_key")

    def __init__(self, identity: Identity, static_key: X25519PrivateKey | None = None) -> None:
        self.private_key = static_key or X25519PrivateKey.generate()
        self.public_key = _public_bytes(self.private_key)
        self.payload = NoiseHandshakePayload(
            identity_key=encode_public_key_proto(identity.public_key),
            identity_sig=identity.sign(SIGNATURE_PREFIX + self.public_key),
        ).serialize()


def verify_payload(payload: bytes, remote_static: bytes) -> PeerId:
    """Check a libp2p Noise payload against the remote static key; return the peer id.

    Raises:
        SecurityHandshakeError: malformed payload, unsupported key or bad signature.
    """
    try:
        parsed = NoiseHandshakePayload.parse(payload)
        raw = decode_public_key_proto(parsed.identity_key)
    except (MalformedFrameError, InvalidPublicKeyError) as exc:
        raise SecurityHandshakeError(
            "invalid libp2p Noise payload (only Ed25519 identities are supported)"
        ) from exc
    peer = PeerId.from_public_key(raw)
    if not peer.verify(parsed.identity_sig, SIGNATURE_PREFIX + remote_static):
        raise SecurityHandshakeError("the Noise static key signature does not verify")
    return peer


class _HsPhase(enum.Enum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class NoiseHandshake:
    """The libp2p Noise handshake for one connection; no I/O.

    Feed received bytes with :meth:`receive_data`, send :meth:`data_to_send`. When
    :attr:`done`, :attr:`remote_peer` is authenticated and :meth:`transport` returns the
    transport (any bytes received past the last handshake message are already inside it).

    Args:
        static: our host's :class:`NoiseStaticKey`.
        initiator: our role (the dialer is the initiator).
        expected_peer: the peer id we dialed; a different one raises
            :class:`~engine.errors.PeerIdMismatchError`.
        ephemeral_key: fixed ephemeral key (tests only).
    """

    def __init__(
        self,
        static: NoiseStaticKey,
        *,
        initiator: bool,
        expected_peer: PeerId | None = None,
        ephemeral_key: X25519PrivateKey | None = None,
    ) -> None:
        self._static = static
        self._state = XXHandshakeState(
            initiator=initiator, static_key=static.private_key, ephemeral_key=ephemeral_key
        )
        self._expected = expected_peer
        self._buf = bytearray()
        self._out = bytearray()
        self._phase = _HsPhase.RUNNING
        self._transport: NoiseTransport | None = None
        self._remote_payload: bytes | None = None
        self.remote_peer: PeerId | None = None
        if initiator:
            self._send(self._state.write_message(b""))

    @property
    def done(self) -> bool:
        """Whether the handshake completed and the peer is authenticated."""
        return self._phase is _HsPhase.DONE

    @property
    def remote_static_key(self) -> bytes | None:
        """The peer's 32-byte X25519 static key, once its handshake message carried it."""
        return self._state.remote_static

    @property
    def remote_payload(self) -> bytes | None:
        """The peer's decrypted ``NoiseHandshakePayload`` bytes, once verified."""
        return self._remote_payload

    def _send(self, message: bytes) -> None:
        self._out += _LEN_PREFIX.pack(len(message)) + message

    def data_to_send(self) -> bytes:
        """Bytes to write to the peer now (possibly empty)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def transport(self) -> NoiseTransport:
        """The transport once :attr:`done`.

        Raises:
            LocalProtocolError: the handshake is not done.
        """
        if self._transport is None:
            raise LocalProtocolError("Noise handshake not done")
        return self._transport

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer.

        Raises:
            SecurityHandshakeError: malformed message, bad signature, bad key.
            PeerIdMismatchError: the peer is not the one we dialed.
        """
        if self._phase is _HsPhase.FAILED:
            raise SecurityHandshakeError("Noise handshake already failed")
        if self._phase is _HsPhase.DONE:
            assert self._transport is not None
            self._transport.feed(data)
            return
        self._buf += data
        try:
            self._process()
        except (SecurityHandshakeError, PeerIdMismatchError):
            self._phase = _HsPhase.FAILED
            raise
        except LocalProtocolError as exc:  # pragma: no cover - defensive
            self._phase = _HsPhase.FAILED
            raise SecurityHandshakeError("unexpected Noise handshake message") from exc

    def _process(self) -> None:
        state = self._state
        while self._phase is _HsPhase.RUNNING and len(self._buf) >= 2:
            (length,) = _LEN_PREFIX.unpack_from(self._buf)
            if len(self._buf) < 2 + length:
                return
            message = bytes(self._buf[2 : 2 + length])
            del self._buf[: 2 + length]
            payload = state.read_message(message)
            if state.message_index >= 2:  # messages 2 and 3 carry the peer's identity payload
                assert state.remote_static is not None
                peer = verify_payload(payload, state.remote_static)
                if self._expected is not None and peer != self._expected:
                    raise PeerIdMismatchError(
                        f"dialed {self._expected} but the peer authenticated as {peer}",
                        details={"expected": str(self._expected), "actual": str(peer)},
                    )
                self.remote_peer = peer
                self._remote_payload = payload
            if not state.finished:
                self._send(state.write_message(self._static.payload))
            if state.finished:
                send, recv = state.split()
                self._transport = NoiseTransport(send, recv)
                self._transport.feed(bytes(self._buf))
                self._buf.clear()
                self._phase = _HsPhase.DONE


class NoiseTransport:
    """Noise transport messages (``uint16_be(len) || ciphertext``); no I/O.

    Args:
        send: CipherState for our outgoing messages.
        recv: CipherState for incoming messages.
    """

    __slots__ = ("_buf", "_recv", "_send")

    def __init__(self, send: CipherState, recv: CipherState) -> None:
        self._send = send
        self._recv = recv
        self._buf = bytearray()

    def encrypt(self, data: bytes | bytearray | memoryview) -> bytes:
        """Encrypt ``data`` into one or more frames of at most 65,535 ciphertext bytes."""
        view = memoryview(data)
        if len(view) <= MAX_PLAINTEXT_CHUNK:
            ct = self._send.encrypt_with_ad(b"", view)
            return _LEN_PREFIX.pack(len(ct)) + ct
        parts: list[bytes] = []
        for start in range(0, len(view), MAX_PLAINTEXT_CHUNK):
            ct = self._send.encrypt_with_ad(b"", view[start : start + MAX_PLAINTEXT_CHUNK])
            parts.append(_LEN_PREFIX.pack(len(ct)))
            parts.append(ct)
        return b"".join(parts)

    def feed(self, data: bytes) -> None:
        """Buffer received bytes without decrypting (see :meth:`receive_data`)."""
        self._buf += data

    @property
    def buffered(self) -> int:
        """Received bytes not yet decrypted (a partial frame)."""
        return len(self._buf)

    def receive_data(self, data: bytes = b"") -> list[bytes]:
        """Feed received bytes; return the plaintexts of every complete frame.

        The buffer never holds more than one partial frame (< 65,537 bytes) between calls.

        Raises:
            DecryptionError: a frame failed authentication (the connection is unusable).
            MalformedFrameError: a frame too short to hold the tag.
        """
        if data:
            self._buf += data
        buf = self._buf
        out: list[bytes] = []
        pos = 0
        end = len(buf)
        view = memoryview(buf)
        try:
            while end - pos >= 2:
                length = (buf[pos] << 8) | buf[pos + 1]
                if end - pos - 2 < length:
                    break
                if length < TAG_LEN:
                    raise MalformedFrameError("Noise transport frame shorter than its tag")
                out.append(self._recv.decrypt_with_ad(b"", view[pos + 2 : pos + 2 + length]))
                pos += 2 + length
        finally:
            view.release()
        if pos:
            del buf[:pos]
        return out


async def noise_handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    static: NoiseStaticKey,
    *,
    initiator: bool,
    expected_peer: PeerId | None = None,
    initial: bytes = b"",
) -> NoiseChannel:
    """Run the libp2p Noise handshake over a TCP stream.

    Args:
        reader: the stream's reader.
        writer: the stream's writer.
        static: our host's static key and signed payload.
        initiator: True on the dialing side.
        expected_peer: the peer id we dialed, checked after authentication.
        initial: bytes already read past the multistream negotiation.

    Returns:
        The secure channel.

    Raises:
        SecurityHandshakeError: the handshake failed (including the peer hanging up).
        PeerIdMismatchError: the peer is not ``expected_peer``.
    """
    hs = NoiseHandshake(static, initiator=initiator, expected_peer=expected_peer)
    if initial:
        hs.receive_data(initial)
    while True:
        out = hs.data_to_send()
        if out:
            writer.write(out)
        if hs.done:
            break
        try:
            data = await reader.read(2 + MAX_NOISE_MESSAGE)
        except OSError as exc:
            raise SecurityHandshakeError("connection failed during the Noise handshake") from exc
        if not data:
            raise SecurityHandshakeError("connection closed during the Noise handshake")
        hs.receive_data(data)
    assert hs.remote_peer is not None
    return NoiseChannel(reader, writer, hs.transport(), hs.remote_peer)


class NoiseChannel:
    """An encrypted byte stream over TCP (the ``SecureChannel`` the muxer runs on).

    ``read`` must not be called from two tasks at once (the muxer has one reader task);
    ``write`` may be called from several tasks: each call is encrypted and queued
    atomically.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        transport: NoiseTransport,
        remote_peer: PeerId,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._transport = transport
        self.remote_peer = remote_peer
        self._pending: deque[bytes] = deque()
        self._closed = False
        self._eof = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` or :meth:`abort` was called."""
        return self._closed

    def _take(self, chunks: Sequence[bytes]) -> bytes:
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def read(self) -> bytes:
        """Return the next decrypted bytes; ``b""`` only at a clean end of stream.

        Raises:
            ConnectionClosedError: we closed the channel, the connection failed, or it
                ended inside a frame.
            DecryptionError: a frame failed authentication.
        """
        if self._pending:
            return self._pending.popleft()
        if self._transport.buffered:
            chunks = [c for c in self._transport.receive_data() if c]
            if chunks:
                return self._take(chunks)
        while True:
            if self._closed:
                raise ConnectionClosedError("secure channel closed")
            if self._eof:
                return b""
            try:
                data = await self._reader.read(_READ_CHUNK)
            except OSError as exc:
                raise ConnectionClosedError("connection failed") from exc
            if not data:
                self._eof = True
                if self._transport.buffered:
                    raise ConnectionClosedError("connection ended inside a Noise frame")
                return b""
            chunks = [c for c in self._transport.receive_data(data) if c]
            if chunks:
                return self._take(chunks)

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt and send ``data`` (split into frames as needed).

        Raises:
            ConnectionClosedError: the channel is closed or the connection failed.
        """
        if self._closed or self._writer.is_closing():
            raise ConnectionClosedError("secure channel closed")
        self._writer.write(self._transport.encrypt(data))
        try:
            await self._writer.drain()
        except (OSError, RuntimeError) as exc:
            raise ConnectionClosedError("connection failed") from exc

    def unread(self, data: bytes) -> None:
        """Push decrypted bytes back: the next :meth:`read` returns them first.

        Used for bytes a negotiation read past its last line.
        """
        if data:
            self._pending.appendleft(data)

    def abort(self) -> None:
        """Close the TCP connection at once (RST when possible), discarding buffers."""
        self._closed = True
        self._writer.transport.abort()

    async def aclose(self) -> None:
        """Flush and close the TCP connection. Idempotent; never raises."""
        if self._closed and self._writer.is_closing():
            return
        self._closed = True
        if not self._writer.is_closing():
            self._writer.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), _CLOSE_TIMEOUT)
        except (OSError, RuntimeError):
            pass
        except (TimeoutError, asyncio.CancelledError):
            # A peer that stopped reading would keep the socket (and its buffer) alive
            # until it resumes or dies: drop it now.
            self._writer.transport.abort()
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
