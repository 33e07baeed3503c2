"""Fault injection for chaos tests: a sans-IO decision core and a thin asyncio TCP relay.

The core, :class:`FaultInjector`, is fed what one TCP *link* (client <-> proxy <->
server) carries, chunk by chunk (``on_data``) plus end-of-stream (``on_eof``), and answers
with the actions the relay must perform, in order:

- :class:`Forward` ``(data, at)``: write ``data`` to the other side at loop time ``at``
  (latency injection; ``at`` never goes backwards in one direction, so bytes keep their
  order, as TCP does);
- :class:`Close` ``(at, reset)``: pass on the end of stream (FIN), or an abort (RST);
- :class:`Kill`: abort both sides of the link now (a dropped connection).

What it can do, each switched on by the test at any time:

- **partition** (:meth:`FaultInjector.partition` / :meth:`~FaultInjector.heal`): every
  byte and every close, on every link old or new, is held back without closing anything;
  healing releases what was held, in order (as TCP retransmission would once the network
  is back). New TCP connections are still accepted by the proxy's listener (the kernel
  does that), they just carry nothing until the heal.
- **drop** (:meth:`FaultInjector.arm_drop`): after ``n`` more bytes in a direction, the
  link is killed (the bytes before the cut point are forwarded, the rest is lost).
  :meth:`FaultInjector.arm_random_drop` picks ``n`` and the direction from the seeded RNG.
- **corruption** (:meth:`FaultInjector.arm_corruption`): one bit of the *body* of the next
  frame (not of a length prefix) is flipped. Which bytes are bodies is known from a
  :class:`FrameTracker` per direction: :class:`NoiseFrameTracker` follows a raw libp2p TCP
  connection (multistream-select lines up to ``/noise``, then 2-byte framed Noise
  messages), :class:`GlueberryFrameTracker` follows a Glueberry stream (``uvarint(len M)
  || uvarint(len P) || P``). A flipped ciphertext byte must fail authentication.
- **latency** (:meth:`FaultInjector.set_latency`): a uniform random delay per chunk and
  direction.

All randomness comes from one ``random.Random(seed)``, so a failing run can be replayed
(the byte offsets are deterministic; the chunking by the kernel is not).

:class:`FaultyProxy` is the asyncio part: it listens on 127.0.0.1, connects every accepted
client to one target, runs the core on both directions (one reader and one writer task per
direction) and performs the actions. Tests wait for what happened with
:meth:`FaultyProxy.wait_until` (no sleeps).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from multiaddr import Multiaddr

__all__ = [
    "Close",
    "FaultInjector",
    "FaultyProxy",
    "Forward",
    "FrameTracker",
    "GlueberryFrameTracker",
    "Kill",
    "Link",
    "NoiseFrameTracker",
    "Span",
    "Way",
]

_READ_CHUNK = 65536


class Way(enum.Enum):
    """Direction of the bytes on a link."""

    UP = "client->server"  # from the dialer (Noise initiator) to the listener
    DOWN = "server->client"


# -- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Forward:
    """Write ``data`` to the far side at loop time ``at``."""

    data: bytes
    at: float


@dataclass(frozen=True, slots=True)
class Close:
    """Pass the end of stream on at loop time ``at``: FIN, or RST when ``reset``."""

    at: float
    reset: bool = False


@dataclass(frozen=True, slots=True)
class Kill:
    """Abort both sides of the link at once (RST both ways)."""

    reason: str


Action = Forward | Close | Kill


# -- frame trackers ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Span:
    """Body bytes ``chunk[start:end]`` of frame number ``index`` (0-based, per direction)."""

    index: int
    start: int
    end: int


class FrameTracker(Protocol):
    """Follows the framing of one direction of a byte stream."""

    def feed(self, chunk: bytes) -> list[Span]:
        """Consume ``chunk``; return where frame bodies lie inside it."""
        ...


class NoiseFrameTracker:
    """One direction of a libp2p TCP connection: multistream-select, then Noise frames.

    Multistream-select messages are ``uvarint(len) || line`` until this direction has sent
    the line ``/noise\\n``; from then on every message is ``u16be(len) || body`` (the
    three XX handshake messages, then transport messages).
    """

    _NOISE_LINE = b"/noise\n"

    def __init__(self) -> None:
        self._noise = False
        self._header = bytearray()  # partial varint / u16 length
        self._remaining = 0  # body (or multistream line) bytes still to come
        self._line = bytearray()
        self.frames = 0  # Noise frames whose body started

    def feed(self, chunk: bytes) -> list[Span]:
        spans: list[Span] = []
        pos = 0
        n = len(chunk)
        while pos < n:
            if self._remaining:
                take = min(self._remaining, n - pos)
                if self._noise:
                    spans.append(Span(self.frames - 1, pos, pos + take))
                else:
                    self._line += chunk[pos : pos + take]
                self._remaining -= take
                pos += take
                if not self._noise and not self._remaining:
                    if bytes(self._line) == self._NOISE_LINE:
                        self._noise = True
                    self._line.clear()
                continue
            self._header.append(chunk[pos])
            pos += 1
            length = self._length()
            if length is None:
                continue
            self._header.clear()
            self._remaining = length
            if self._noise:
                self.frames += 1
        return spans

    def _length(self) -> int | None:
        header = self._header
        if self._noise:
            return (header[0] << 8) | header[1] if len(header) == 2 else None
        if header[-1] & 0x80:
            return None
        value = 0
        for i, byte in enumerate(header):
            value |= (byte & 0x7F) << (7 * i)
        return value


class GlueberryFrameTracker:
    """One direction of a Glueberry stream: ``uvarint(len M) || M``, ``M = uvarint(len P) || P``.

    The spans are the payloads ``P`` (nonce || ciphertext || tag on an encrypted stream).
    """

    def __init__(self) -> None:
        self._header = bytearray()
        self._outer_left = 0  # bytes of M still to come
        self._inner_header = bytearray()
        self._inner_done = False
        self.frames = 0

    def feed(self, chunk: bytes) -> list[Span]:
        spans: list[Span] = []
        pos = 0
        n = len(chunk)
        while pos < n:
            if not self._outer_left:
                self._header.append(chunk[pos])
                pos += 1
                if not self._header[-1] & 0x80:
                    self._outer_left = _uvarint(self._header)
                    self._header.clear()
                    self._inner_header.clear()
                    self._inner_done = False
                continue
            if not self._inner_done:
                self._inner_header.append(chunk[pos])
                pos += 1
                self._outer_left -= 1
                if not self._inner_header[-1] & 0x80:
                    self._inner_done = True
                    self.frames += 1
                continue
            take = min(self._outer_left, n - pos)
            spans.append(Span(self.frames - 1, pos, pos + take))
            self._outer_left -= take
            pos += take
        return spans


def _uvarint(data: bytearray) -> int:
    value = 0
    for i, byte in enumerate(data):
        value |= (byte & 0x7F) << (7 * i)
    return value


# -- the decision core -----------------------------------------------------------------------


@dataclass(eq=False)
class Link:
    """What the core knows about one relayed connection."""

    id: int
    trackers: dict[Way, FrameTracker]
    held: dict[Way, list[bytes | None]] = field(
        default_factory=lambda: {Way.UP: [], Way.DOWN: []}
    )  # ``None`` = a held end of stream
    held_reset: dict[Way, bool] = field(default_factory=lambda: {Way.UP: False, Way.DOWN: False})
    last_at: dict[Way, float] = field(default_factory=lambda: {Way.UP: 0.0, Way.DOWN: 0.0})
    bytes: dict[Way, int] = field(default_factory=lambda: {Way.UP: 0, Way.DOWN: 0})
    killed: bool = False
    stuck: bool = False  # blackholed for good (see FaultInjector.heal)


@dataclass(slots=True)
class _Drop:
    way: Way | None
    remaining: int


@dataclass(slots=True)
class _Corruption:
    way: Way
    min_frame: int


class FaultInjector:
    """Decides what happens to every chunk of every link (no I/O, no clock).

    Args:
        seed: seeds the one random source (latency draws, random drops, bit choice).
        tracker_factory: builds the frame tracker of one direction of a new link.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        tracker_factory: Callable[[Way], FrameTracker] = lambda way: NoiseFrameTracker(),
    ) -> None:
        self.rng = random.Random(seed)
        self._tracker_factory = tracker_factory
        self._next_id = 0
        self.links: dict[int, Link] = {}
        self.partitioned = False
        self.latency: tuple[float, float] | None = None
        self._drop: _Drop | None = None
        self._corruption: _Corruption | None = None
        # Counters the tests look at.
        self.kills = 0
        self.corruptions = 0
        self.links_opened = 0
        self.forwarded = {Way.UP: 0, Way.DOWN: 0}
        self.held_bytes = 0

    # -- configuration -------------------------------------------------------------------

    def set_latency(self, low: float, high: float) -> None:
        """Delay every chunk by a uniform draw in ``[low, high]`` seconds."""
        if not 0 <= low <= high:
            raise ValueError("need 0 <= low <= high")
        self.latency = (low, high)

    def clear_latency(self) -> None:
        """No added delay."""
        self.latency = None

    def partition(self) -> None:
        """Hold everything back, on every link, until :meth:`heal`."""
        self.partitioned = True

    def heal(self, now: float, *, forget: bool = False) -> list[tuple[Link, Way, list[Action]]]:
        """End the partition: what was held is released, in order, per link and direction.

        Args:
            now: loop time.
            forget: instead, the links that exist now stay blackholed for good (their
                held bytes are discarded, nothing is ever forwarded or closed on them),
                like flows whose state a middlebox lost; new links work again.
        """
        self.partitioned = False
        out: list[tuple[Link, Way, list[Action]]] = []
        for link in list(self.links.values()):
            if forget:
                link.stuck = True
                link.held = {Way.UP: [], Way.DOWN: []}
                continue
            for way in Way:
                held, link.held[way] = link.held[way], []
                actions: list[Action] = []
                for item in held:
                    if item is None:
                        actions.append(Close(self._at(link, way, now), link.held_reset[way]))
                    else:
                        actions += self._deliver(link, way, item, now)
                if actions:
                    out.append((link, way, actions))
        return out

    def arm_drop(self, after_bytes: int, way: Way | None = None) -> None:
        """Kill the link carrying the ``after_bytes``-th next byte (in ``way``, or either)."""
        if after_bytes < 0:
            raise ValueError("after_bytes must be >= 0")
        self._drop = _Drop(way, after_bytes)

    def arm_random_drop(self, low: int, high: int) -> tuple[Way, int]:
        """:meth:`arm_drop` with a seeded random byte count and direction; returns them."""
        way = self.rng.choice([Way.UP, Way.DOWN])
        after = self.rng.randint(low, high)
        self.arm_drop(after, way)
        return way, after

    @property
    def drop_armed(self) -> bool:
        """Whether an armed drop has not fired yet."""
        return self._drop is not None

    def arm_corruption(self, way: Way, *, min_frame: int = 0) -> None:
        """Flip one bit in the body of the next frame numbered ``>= min_frame`` in ``way``."""
        self._corruption = _Corruption(way, min_frame)

    @property
    def corruption_armed(self) -> bool:
        """Whether an armed corruption has not happened yet."""
        return self._corruption is not None

    # -- links ---------------------------------------------------------------------------------

    def new_link(self) -> Link:
        """Register a new relayed connection."""
        self._next_id += 1
        link = Link(self._next_id, {way: self._tracker_factory(way) for way in Way})
        self.links[link.id] = link
        self.links_opened += 1
        return link

    def link_closed(self, link: Link) -> None:
        """The relay finished with ``link``."""
        self.links.pop(link.id, None)

    def on_data(self, link: Link, way: Way, data: bytes, now: float) -> list[Action]:
        """Bytes read from one side of ``link``, to go the ``way`` direction."""
        if link.killed or link.stuck or not data:
            return []
        if self.partitioned:
            # Track framing now: held bytes are released unchanged, in order.
            link.trackers[way].feed(data)
            link.held[way].append(data)
            self.held_bytes += len(data)
            return []
        drop = self._drop
        cut: int | None = None
        if drop is not None and (drop.way is None or drop.way is way):
            if len(data) >= drop.remaining:
                cut = drop.remaining
                self._drop = None
            else:
                drop.remaining -= len(data)
        if cut is None:
            return self._deliver(link, way, data, now)
        actions = self._deliver(link, way, data[:cut], now) if cut else []
        link.killed = True
        self.kills += 1
        return [*actions, Kill(f"drop after {cut} bytes of this chunk ({way.value})")]

    def on_eof(self, link: Link, way: Way, now: float, *, reset: bool = False) -> list[Action]:
        """One side ended (``reset``: it aborted) its sending, towards ``way``."""
        if link.killed or link.stuck:
            return []
        if self.partitioned:
            link.held[way].append(None)
            link.held_reset[way] = reset
            return []
        return [Close(self._at(link, way, now), reset)]

    # -- internals -------------------------------------------------------------------------

    def _deliver(self, link: Link, way: Way, data: bytes, now: float) -> list[Action]:
        spans = link.trackers[way].feed(data)
        corruption = self._corruption
        if corruption is not None and corruption.way is way:
            for span in spans:
                if span.index >= corruption.min_frame and span.end > span.start:
                    buf = bytearray(data)
                    pos = self.rng.randrange(span.start, span.end)
                    buf[pos] ^= 1 << self.rng.randrange(8)
                    data = bytes(buf)
                    self._corruption = None
                    self.corruptions += 1
                    break
        link.bytes[way] += len(data)
        self.forwarded[way] += len(data)
        return [Forward(data, self._at(link, way, now))]

    def _at(self, link: Link, way: Way, now: float) -> float:
        delay = self.rng.uniform(*self.latency) if self.latency is not None else 0.0
        at = max(link.last_at[way], now + delay)
        link.last_at[way] = at
        return at


# -- the asyncio relay ---------------------------------------------------------------------------


@dataclass(eq=False)
class _Relay:
    link: Link
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter]
    server: tuple[asyncio.StreamReader, asyncio.StreamWriter]
    queues: dict[Way, asyncio.Queue[Action]]
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def writer_for(self, way: Way) -> asyncio.StreamWriter:
        return self.server[1] if way is Way.UP else self.client[1]

    def abort(self) -> None:
        for _, writer in (self.client, self.server):
            writer.transport.abort()


class FaultyProxy:
    """A TCP relay on 127.0.0.1 to ``target`` that applies a :class:`FaultInjector`.

    Args:
        target: ``(host, port)`` every accepted connection is relayed to.
        faults: the decision core (a fresh seeded one by default).
    """

    def __init__(self, target: tuple[str, int], faults: FaultInjector | None = None) -> None:
        self.target = target
        self.faults = faults if faults is not None else FaultInjector()
        self._server: asyncio.Server | None = None
        self._relays: dict[int, _Relay] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepts: set[asyncio.Task[None]] = set()
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on 127.0.0.1 (any free port)."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def multiaddr(self, peer_id: object) -> Multiaddr:
        """Our address with ``/p2p/<peer_id>`` (dial the target's peer through us)."""
        return Multiaddr(f"/ip4/127.0.0.1/tcp/{self.port}/p2p/{peer_id}")

    async def close(self) -> None:
        """Stop listening, abort every link, await every task."""
        if self._server is not None:
            self._server.close()
        for relay in list(self._relays.values()):
            relay.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, *self._accepts, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        self._relays.clear()

    async def __aenter__(self) -> FaultyProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- test controls -------------------------------------------------------------------------

    @property
    def live_links(self) -> int:
        """Links currently relayed."""
        return len(self._relays)

    def partition(self) -> None:
        """Blackhole every link (see :meth:`FaultInjector.partition`)."""
        self.faults.partition()

    def heal(self, *, forget: bool = False) -> None:
        """End the partition and release what was held (see :meth:`FaultInjector.heal`)."""
        now = asyncio.get_running_loop().time()
        for link, way, actions in self.faults.heal(now, forget=forget):
            relay = self._relays.get(link.id)
            if relay is not None:
                self._perform(relay, way, actions)
        self._changed()

    def kill_all(self) -> None:
        """Abort every live link now."""
        for relay in list(self._relays.values()):
            if not relay.link.killed:
                relay.link.killed = True
                self.faults.kills += 1
            self._kill(relay)

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Wait until ``predicate()`` holds (checked after every change of the relay).

        Raises:
            TimeoutError: not within ``timeout``.
        """
        if predicate():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (predicate, fut)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await fut
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)

    # -- internals -------------------------------------------------------------------------

    def _changed(self) -> None:
        for predicate, fut in list(self._waiters):
            if not fut.done() and predicate():
                fut.set_result(None)

    def _spawn(self, coro: object, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            coro,  # type: ignore[arg-type]
            name=name,
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The server's own task: close() waits for it but never cancels it (asyncio's
        # start_server callback reports a cancelled handler task as an error).
        task = asyncio.current_task()
        if task is not None:
            self._accepts.add(task)
            task.add_done_callback(self._accepts.discard)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        link = self.faults.new_link()
        relay = _Relay(
            link,
            (reader, writer),
            (up_reader, up_writer),
            {Way.UP: asyncio.Queue(), Way.DOWN: asyncio.Queue()},
        )
        self._relays[link.id] = relay
        self._changed()
        relay.tasks = [
            self._spawn(self._pump(relay, Way.UP), f"proxy-{link.id}-read-up"),
            self._spawn(self._pump(relay, Way.DOWN), f"proxy-{link.id}-read-down"),
            self._spawn(self._drain(relay, Way.UP), f"proxy-{link.id}-write-up"),
            self._spawn(self._drain(relay, Way.DOWN), f"proxy-{link.id}-write-down"),
        ]
        try:
            await asyncio.gather(*relay.tasks, return_exceptions=True)
        finally:
            relay.abort()
            self._relays.pop(link.id, None)
            self.faults.link_closed(link)
            self._changed()

    async def _pump(self, relay: _Relay, way: Way) -> None:
        reader = relay.client[0] if way is Way.UP else relay.server[0]
        loop = asyncio.get_running_loop()
        while True:
            reset = False
            try:
                data = await reader.read(_READ_CHUNK)
            except OSError:
                data, reset = b"", True
            if not data:
                self._perform(
                    relay, way, self.faults.on_eof(relay.link, way, loop.time(), reset=reset)
                )
                return
            self._perform(relay, way, self.faults.on_data(relay.link, way, data, loop.time()))

    def _perform(self, relay: _Relay, way: Way, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Kill) and not any(isinstance(a, Forward) for a in actions):
                self._kill(relay)  # nothing to write first: abort at once
                return
            relay.queues[way].put_nowait(action)
        if actions:
            self._changed()

    def _kill(self, relay: _Relay) -> None:
        relay.abort()
        for task in relay.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self._changed()

    async def _drain(self, relay: _Relay, way: Way) -> None:
        writer = relay.writer_for(way)
        queue = relay.queues[way]
        loop = asyncio.get_running_loop()
        while True:
            action = await queue.get()
            if isinstance(action, Kill):
                self._kill(relay)
                return
            delay = action.at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # the injected latency itself
            if isinstance(action, Close):
                if action.reset or not writer.can_write_eof():
                    writer.transport.abort()
                else:
                    with contextlib.suppress(OSError, RuntimeError):
                        writer.write_eof()
                return
            try:
                writer.write(action.data)
                await writer.drain()
            except (OSError, RuntimeError):
                # The far side is gone: the whole link is.
                self._kill(relay)
                return
