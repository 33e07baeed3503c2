"""The stream manager: named Glueberry streams per peer, encrypted or not.

Wire: one libp2p stream per (peer, name) and direction of opening, protocol
``/glueberry/stream/{name}/1.0.0``, v1 frames (:mod:`engine.framing`); on an encrypted
stream each frame's payload is ``nonce || ciphertext || tag`` under the peer's stream key.

Rules that keep it correct and fast (each is a bug of the Go original, see
IMPROVEMENT_PLAN.md):

- *No lock across network I/O (plan 1.4).* There is no lock at all: the event loop runs
  one task at a time, every decision is taken in synchronous code, and the only awaits are
  the network calls themselves. A lazily opened stream is guarded by an "opening" future
  that concurrent senders wait on (shielded: a waiter's cancellation never cancels it).
- *Concurrent opens from both sides lose nothing.* Inbound streams are always accepted;
  every stream of a name is read; a channel sends on exactly one stream for as long as it
  lives (the first one it had: an inbound one if the peer opened first, else our own),
  so per-sender order is preserved.
- *Size before allocation (plan 0.3).* The reader's :class:`~engine.framing.FrameDecoder`
  rejects an oversized length before buffering its body; the stream is then reset (no
  resynchronisation is possible) and the drop is counted.
- *Decryption failure drops one frame*: counted, reported, the stream stays open.
- *Write coalescing.* :meth:`StreamManager.send` encrypts and frames the message, queues
  it and returns; one writer task per channel joins everything queued into one transport
  write. The channel's flow controller bounds what is queued, in messages *and* in
  payload bytes (high/low watermarks, :mod:`engine.flow`): a sender blocks at a high
  watermark and blocked senders resume, in order, below the low ones. Queued memory per
  channel is thus at most ``max(send_buffer_bytes, max_message_size)`` of payload plus
  38 bytes of framing and cipher overhead per message, plus one joined copy of the batch
  being written.
- *Bounded per peer.* At most two inbound streams per (peer, name) are read at once
  (each may buffer one partial frame of up to ``max_message_size``); more are reset.
- *Every drop is reported* to the node with a :class:`~engine.observability.DropReason`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from engine.crypto.cipher import CIPHER_OVERHEAD, Cipher
from engine.crypto.identity import PeerId
from engine.crypto.secret import SecretBytes
from engine.errors import (
    DecryptionError,
    FrameError,
    FrameTooLargeError,
    GlueberryError,
    InvalidStreamNameError,
    MessageTooLargeError,
    NotEstablishedError,
    SendTimeoutError,
    StreamError,
)
from engine.framing import FrameDecoder, encode_frame
from engine.handshake import stream_protocol
from engine.net.interface import Direction, P2PHost, P2PStream
from engine.observability import DropReason

__all__ = [
    "STREAM_PROTOCOL_FAMILY",
    "DropReason",
    "FlowControl",
    "StreamEvents",
    "StreamManager",
    "parse_stream_protocol",
]

_log = logging.getLogger(__name__)

_READ_SIZE = 256 * 1024
# Inbound streams read at once per (peer, name); more are reset (memory bound).
_MAX_INBOUND_PER_CHANNEL = 2
_PREFIX = "/glueberry/stream/"
_SUFFIX = "/1.0.0"
STREAM_PROTOCOL_FAMILY = _PREFIX
"""The key of the stream manager's protocol family on the host (not announced)."""


def parse_stream_protocol(protocol_id: str) -> str | None:
    """The stream name inside ``/glueberry/stream/{name}/1.0.0``, or ``None``."""
    if protocol_id.startswith(_PREFIX) and protocol_id.endswith(_SUFFIX):
        name = protocol_id[len(_PREFIX) : -len(_SUFFIX)]
        return name or None
    return None


class FlowControl(Protocol):
    """What the manager needs of a per-channel flow controller (engine.flow)."""

    async def acquire(self, timeout: float | None = None, size: int = 0) -> None:  # noqa: ASYNC109
        """Take one credit for ``size`` bytes, waiting while a budget is spent."""
        ...

    def release(self, count: int = 1, nbytes: int = 0) -> None:
        """Return credits (messages and bytes); blocked senders resume below the low marks."""
        ...

    def close(self) -> None:
        """Fail every waiter and every later acquire."""
        ...


class StreamEvents(Protocol):
    """Callbacks from the stream manager to the node (sync; must not block or raise)."""

    def message_received(self, peer_id: PeerId, stream: str, data: bytes) -> None:
        """A message arrived (already decrypted)."""
        ...

    def message_sent(self, peer_id: PeerId, stream: str, size: int) -> None:
        """A message was queued for sending."""
        ...

    def message_dropped(self, peer_id: PeerId, stream: str, reason: DropReason) -> None:
        """A message was dropped for ``reason``."""
        ...

    def decryption_failed(self, peer_id: PeerId, stream: str, error: DecryptionError) -> None:
        """An encrypted frame failed authentication and was dropped."""
        ...


@dataclass(eq=False)
class _Channel:
    """One (peer, name): the stream we send on, the streams we read, the send queue."""

    name: str
    encrypted: bool
    flow: FlowControl
    send_stream: P2PStream | None = None
    opening: asyncio.Future[None] | None = None
    streams: set[P2PStream] = field(default_factory=set)
    queue: list[bytes] = field(default_factory=list)
    queued_bytes: int = 0  # payload bytes of `queue`, as acquired from `flow`
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    writer: asyncio.Task[None] | None = None


@dataclass(eq=False)
class _PeerStreams:
    """Stream state of one peer, created by prepare and removed by close_peer."""

    peer_id: PeerId
    cipher: Cipher | None
    names: dict[str, bool]  # name -> encrypted
    sending: bool = False
    closed: bool = False
    channels: dict[str, _Channel] = field(default_factory=dict)
    messages_sent: int = 0
    warned: bool = False
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class StreamManager:
    """Named streams for every peer of one node.

    Args:
        host: the libp2p host.
        events: the node's callbacks.
        flow_factory: builds one flow controller per channel.
        max_message_size: largest plaintext message (checked on send and, plus the
            cipher overhead, on receive before allocation).
        max_streams_per_peer: most stream names one peer may have prepared.
        max_stream_name_length: longest stream name.
        open_timeout: seconds to open a stream when the caller gave no timeout.
        nonce_warning_threshold: messages per peer after which a warning is logged once.
    """

    def __init__(
        self,
        host: P2PHost,
        events: StreamEvents,
        *,
        flow_factory: Callable[[], FlowControl],
        max_message_size: int,
        max_streams_per_peer: int = 64,
        max_stream_name_length: int = 64,
        open_timeout: float = 10.0,
        nonce_warning_threshold: int = 2**40,
    ) -> None:
        self._host = host
        self._events = events
        self._flow_factory = flow_factory
        self._max_message_size = max_message_size
        self._max_streams = max_streams_per_peer
        self._max_name = max_stream_name_length
        self._open_timeout = open_timeout
        self._nonce_threshold = nonce_warning_threshold
        self._peers: dict[PeerId, _PeerStreams] = {}
        self._handler_refs: dict[str, int] = {}
        self._resets: set[asyncio.Task[None]] = set()
        self._closed = False
        # One unannounced handler for the whole family: identify and multistream ``ls``
        # list exact protocol ids only, so peers cannot learn the stream names in use.
        # Negotiation accepts a name while some peer has it prepared (``na`` otherwise).
        host.set_stream_handler_match(STREAM_PROTOCOL_FAMILY, self._serves, self.handle_inbound)

    # -- lifecycle per peer ----------------------------------------------------------------

    def prepare(
        self,
        peer_id: PeerId,
        key: SecretBytes | None,
        names: Iterable[str],
        unencrypted: Iterable[str] = (),
    ) -> None:
        """Make the node ready to receive on ``names`` from ``peer_id`` (phase one).

        Args:
            peer_id: the peer.
            key: the stream key (the manager makes its own copy; the caller closes
                ``key``), or ``None`` when every name is unencrypted.
            names: encrypted stream names.
            unencrypted: stream names whose payloads travel in clear.

        Raises:
            InvalidStreamNameError: a bad name, too many names, or an encrypted name
                without a key.
        """
        from engine.stream_name import check_stream_name

        table: dict[str, bool] = {}
        for name in names:
            table[check_stream_name(name, self._max_name)] = True
        for name in unencrypted:
            table[check_stream_name(name, self._max_name)] = False
        if len(table) > self._max_streams:
            raise InvalidStreamNameError(
                f"{len(table)} streams requested, limit is {self._max_streams}",
                details={"limit": self._max_streams},
            )
        if key is None and any(table.values()):
            raise InvalidStreamNameError("encrypted streams need a key")
        old = self._peers.pop(peer_id, None)
        if old is not None:
            self._discard(old)
        cipher = Cipher(key) if key is not None else None
        self._peers[peer_id] = _PeerStreams(peer_id, cipher, table)
        for name in table:
            self._ref_handler(name)

    def finalize(self, peer_id: PeerId) -> None:
        """Enable sending to ``peer_id`` (phase two).

        Raises:
            NotEstablishedError: :meth:`prepare` was not called for the peer.
        """
        state = self._peers.get(peer_id)
        if state is None:
            raise NotEstablishedError(f"streams for {peer_id} are not prepared")
        state.sending = True

    def is_prepared(self, peer_id: PeerId) -> bool:
        """Whether the peer's streams are prepared (receiving possible)."""
        return peer_id in self._peers

    def is_sending(self, peer_id: PeerId) -> bool:
        """Whether sending to the peer is enabled (handshake finalized)."""
        state = self._peers.get(peer_id)
        return state is not None and state.sending

    def stream_names(self, peer_id: PeerId) -> list[str]:
        """The prepared stream names of a peer."""
        state = self._peers.get(peer_id)
        return list(state.names) if state is not None else []

    def messages_sent(self, peer_id: PeerId) -> int:
        """Messages sent to the peer under its current key."""
        state = self._peers.get(peer_id)
        return state.messages_sent if state is not None else 0

    def close_peer(self, peer_id: PeerId) -> list[asyncio.Task[None]]:
        """Forget the peer: close its cipher, cancel its tasks, reset its streams.

        Returns:
            The cancelled tasks (await them to be sure they finished).
        """
        state = self._peers.pop(peer_id, None)
        if state is None:
            return []
        return self._discard(state)

    def _discard(self, state: _PeerStreams) -> list[asyncio.Task[None]]:
        state.closed = True
        state.sending = False
        for name in state.names:
            self._unref_handler(name)
        tasks = list(state.tasks)
        for task in tasks:
            task.cancel()
        for ch in state.channels.values():
            ch.flow.close()
            dropped = len(ch.queue)
            ch.queue.clear()
            ch.queued_bytes = 0
            for _ in range(dropped):
                self._events.message_dropped(state.peer_id, ch.name, DropReason.DISCONNECTED)
            for stream in ch.streams:
                self._spawn_reset(stream)
            ch.streams.clear()
            ch.send_stream = None
        if state.cipher is not None:
            state.cipher.close()
        return tasks

    async def aclose(self) -> None:
        """Close every peer and wait for every task the manager started."""
        self._closed = True
        self._host.remove_stream_handler_match(STREAM_PROTOCOL_FAMILY)
        tasks: list[asyncio.Task[None]] = []
        for peer_id in list(self._peers):
            tasks += self.close_peer(peer_id)
        tasks += self._resets
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn_reset(self, stream: P2PStream) -> None:
        # Reset from synchronous code (the reset itself is a coroutine); tracked so that
        # aclose() waits for it.
        async def run() -> None:
            with contextlib.suppress(Exception):
                await stream.reset()

        task = asyncio.get_running_loop().create_task(run(), name="gb-reset")
        self._resets.add(task)
        task.add_done_callback(self._resets.discard)

    # -- handlers ----------------------------------------------------------------------------

    def _serves(self, protocol_id: str) -> bool:
        # The family's match: a stream name some peer has prepared (and we are open).
        name = parse_stream_protocol(protocol_id)
        return name is not None and not self._closed and name in self._handler_refs

    def _ref_handler(self, name: str) -> None:
        self._handler_refs[name] = self._handler_refs.get(name, 0) + 1

    def _unref_handler(self, name: str) -> None:
        count = self._handler_refs.get(name, 0) - 1
        if count <= 0:
            self._handler_refs.pop(name, None)
        else:
            self._handler_refs[name] = count

    async def handle_inbound(self, stream: P2PStream) -> None:
        """Host handler for ``/glueberry/stream/*``: register the stream and read it."""
        name = parse_stream_protocol(stream.protocol_id)
        state = self._peers.get(stream.remote_peer)
        if name is None or state is None or name not in state.names or state.closed:
            if name is not None:
                self._events.message_dropped(stream.remote_peer, name, DropReason.UNKNOWN_STREAM)
            await stream.reset()
            return
        ch = self._channel(state, name)
        inbound = sum(1 for s in ch.streams if s.direction is Direction.INBOUND)
        if inbound >= _MAX_INBOUND_PER_CHANNEL:
            # Each stream may buffer a partial frame of up to max_message_size: a peer
            # opening streams without end would hold that much per stream. A well-behaved
            # peer has one per name (two briefly, while a failed one is wound down).
            _log.debug(
                "refused inbound stream %s from %s: %d already open", name, state.peer_id, inbound
            )
            self._events.message_dropped(state.peer_id, name, DropReason.TOO_MANY_STREAMS)
            await stream.reset()
            return
        ch.streams.add(stream)
        await self._read_loop(state, ch, stream)

    # -- sending -----------------------------------------------------------------------------

    def _channel(self, state: _PeerStreams, name: str) -> _Channel:
        ch = state.channels.get(name)
        if ch is None:
            ch = _Channel(name, state.names[name], self._flow_factory())
            state.channels[name] = ch
        return ch

    async def send(
        self,
        peer_id: PeerId,
        name: str,
        data: bytes,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> None:
        """Queue one message on the named stream (opened lazily).

        Returns once the message is encrypted and queued for the transport (write
        coalescing); the per-channel flow controller bounds the queue.

        Args:
            peer_id: the peer.
            name: a prepared stream name.
            data: the message.
            timeout: seconds to wait for flow-control credit and the stream opening.

        Raises:
            NotEstablishedError: the handshake with the peer is not finalized.
            InvalidStreamNameError: ``name`` is not prepared for the peer.
            MessageTooLargeError: ``data`` exceeds ``max_message_size``.
            SendTimeoutError: no credit / no stream within ``timeout``.
            StreamError, NotConnectedError, NegotiationError: the stream cannot open.
        """
        state = self._peers.get(peer_id)
        if state is None or not state.sending:
            raise NotEstablishedError(f"handshake with {peer_id} is not finalized")
        encrypted = state.names.get(name)
        if encrypted is None:
            raise InvalidStreamNameError(
                f"stream {name[:64]!r} is not prepared for this peer", details={"stream": name[:64]}
            )
        if len(data) > self._max_message_size:
            raise MessageTooLargeError(
                f"message of {len(data)} bytes exceeds the maximum of {self._max_message_size}",
                details={"size": len(data), "limit": self._max_message_size},
            )
        ch = self._channel(state, name)
        size = len(data)
        try:
            await ch.flow.acquire(timeout, size)
        except TimeoutError:
            raise SendTimeoutError(
                f"no flow-control credit on {name!r} within {timeout} s"
            ) from None
        try:
            if ch.send_stream is None:
                await self._ensure_send_stream(state, ch, timeout)
            if state.closed:
                raise NotEstablishedError(f"streams of {peer_id} were closed")
            cipher = state.cipher
            payload = cipher.encrypt(data) if encrypted and cipher is not None else data
            ch.queue.append(encode_frame(payload))
            ch.queued_bytes += size
        except BaseException:
            ch.flow.release(1, size)
            raise
        ch.wake.set()
        state.messages_sent += 1
        if state.messages_sent >= self._nonce_threshold and not state.warned:
            state.warned = True
            _log.warning(
                "%d messages sent to %s under one v1 key: random-nonce collisions are no "
                "longer negligible; reconnect to rekey",
                state.messages_sent,
                peer_id,
            )
        self._events.message_sent(peer_id, name, size)

    async def _ensure_send_stream(
        self,
        state: _PeerStreams,
        ch: _Channel,
        timeout: float | None,  # noqa: ASYNC109
    ) -> None:
        # Decide synchronously, then do the network I/O with no lock held; concurrent
        # senders wait on the opener's future and re-check afterwards.
        while ch.send_stream is None:
            if state.closed:
                raise NotEstablishedError(f"streams of {state.peer_id} were closed")
            inbound = next(iter(ch.streams), None)
            if inbound is not None:
                self._use_send_stream(state, ch, inbound)
                return
            if ch.opening is not None:
                await asyncio.shield(ch.opening)
                continue
            opening: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            ch.opening = opening
            try:
                stream = await self._host.new_stream(
                    state.peer_id,
                    [stream_protocol(ch.name)],
                    timeout=timeout if timeout is not None else self._open_timeout,
                )
            finally:
                ch.opening = None
                opening.set_result(None)
            if state.closed:
                self._spawn_reset(stream)
                raise NotEstablishedError(f"streams of {state.peer_id} were closed")
            ch.streams.add(stream)
            if ch.send_stream is None:
                self._use_send_stream(state, ch, stream)
            self._spawn(state, self._read_loop(state, ch, stream), f"gb-read-{ch.name}")

    def _use_send_stream(self, state: _PeerStreams, ch: _Channel, stream: P2PStream) -> None:
        ch.send_stream = stream
        if ch.writer is None or ch.writer.done():
            ch.writer = self._spawn(state, self._write_loop(state, ch), f"gb-write-{ch.name}")

    def _spawn(self, state: _PeerStreams, coro: object, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            coro,  # type: ignore[arg-type]
            name=name,
        )
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)
        return task

    async def _write_loop(self, state: _PeerStreams, ch: _Channel) -> None:
        # One writer per channel: everything queued since the last write goes out in one
        # transport write. Credits are returned once the bytes are handed to the stream.
        while True:
            if not ch.queue:
                ch.wake.clear()
                await ch.wake.wait()
                continue
            stream = ch.send_stream
            if stream is None:
                return
            batch = ch.queue
            nbytes = ch.queued_bytes
            ch.queue = []
            ch.queued_bytes = 0
            data = batch[0] if len(batch) == 1 else b"".join(batch)
            try:
                await stream.write(data)
            except GlueberryError as exc:
                _log.debug("write on %s to %s failed: %s", ch.name, state.peer_id, exc)
                for _ in batch:
                    self._events.message_dropped(state.peer_id, ch.name, DropReason.WRITE_FAILED)
                ch.flow.release(len(batch), nbytes)
                self._retire(ch, stream, state.peer_id)
                self._spawn_reset(stream)
                return
            ch.flow.release(len(batch), nbytes)

    def _retire(self, ch: _Channel, stream: P2PStream, peer_id: PeerId) -> None:
        ch.streams.discard(stream)
        if ch.send_stream is stream:
            ch.send_stream = None
            # What was queued behind a failed write, or on a stream the peer ended, cannot
            # go out on this stream: dropped, and counted as such.
            dropped = len(ch.queue)
            nbytes = ch.queued_bytes
            ch.queue.clear()
            ch.queued_bytes = 0
            if dropped:
                ch.flow.release(dropped, nbytes)
                for _ in range(dropped):
                    self._events.message_dropped(peer_id, ch.name, DropReason.STREAM_CLOSED)

    # -- receiving ---------------------------------------------------------------------------

    async def _read_loop(self, state: _PeerStreams, ch: _Channel, stream: P2PStream) -> None:
        peer_id = state.peer_id
        name = ch.name
        events = self._events
        limit = self._max_message_size + (CIPHER_OVERHEAD if ch.encrypted else 0)
        decoder = FrameDecoder(limit)
        cipher = state.cipher if ch.encrypted else None
        deliver = events.message_received
        try:
            while not state.closed:
                try:
                    chunk = await stream.read(_READ_SIZE)
                except StreamError as exc:
                    _log.debug("read on %s from %s ended: %s", name, peer_id, exc)
                    return
                if not chunk:
                    try:
                        decoder.feed_eof()
                    except FrameError:  # the peer ended its side inside a frame
                        events.message_dropped(peer_id, name, DropReason.MALFORMED)
                    return
                try:
                    payloads = decoder.feed(chunk)
                except FrameTooLargeError:
                    events.message_dropped(peer_id, name, DropReason.OVERSIZED)
                    _log.info("oversized frame on %s from %s: stream reset", name, peer_id)
                    await stream.reset()
                    return
                except FrameError:
                    events.message_dropped(peer_id, name, DropReason.MALFORMED)
                    await stream.reset()
                    return
                for i, payload in enumerate(payloads):
                    if cipher is not None:
                        try:
                            payload = cipher.decrypt(payload)
                        except DecryptionError as exc:
                            events.message_dropped(peer_id, name, DropReason.DECRYPTION)
                            events.decryption_failed(peer_id, name, exc)
                            continue
                        except GlueberryError:  # cipher closed under us: peer going away
                            for _ in range(len(payloads) - i):
                                events.message_dropped(peer_id, name, DropReason.STREAM_CLOSED)
                            return
                    deliver(peer_id, name, payload)
                # Drop our references before waiting for the next read: an idle stream
                # would otherwise pin its last burst (up to a read's worth of payloads)
                # for as long as it stays open, on every connection.
                chunk = payload = b""
                payloads = []
        finally:
            self._retire(ch, stream, peer_id)
            if not state.closed:
                with contextlib.suppress(GlueberryError):
                    await stream.aclose()
