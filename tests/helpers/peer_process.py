"""Drive a libp2p peer running in a subprocess through JSON lines.

Three peers speak this control protocol: ``tests/interop/js_peer.mjs`` (js-libp2p),
``tests/interop/py_peer.py`` (py-libp2p) and ``tests/helpers/glueberry_peer.py`` (our
stack). Each prints ``{"event": "ready", "peer_id", "addrs", "agent_version",
"protocols"}`` on stdout, then answers every stdin command ``{"id", "cmd", ...}`` with
``{"id", "ok": true, ...}`` or ``{"id", "ok": false, "error"}``; other stdout lines are
events (``{"event": "exchange", ...}``). EOF on stdin (or ``{"cmd": "exit"}``) stops it.

:class:`PeerProcess` always kills the subprocess in :meth:`PeerProcess.aclose`, which the
``async with`` form calls on every exit path.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = [
    "INTEROP_DIR",
    "JS_NODE_MODULES",
    "REPO_ROOT",
    "PeerCommandError",
    "PeerProcess",
    "glueberry_peer_argv",
    "js_peer_argv",
    "py_peer_argv",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTS_DIR = REPO_ROOT / "tests"
INTEROP_DIR = TESTS_DIR / "interop"
JS_NODE_MODULES = INTEROP_DIR / "node_modules"
_STDERR_KEEP = 200  # lines of stderr kept for error messages


class PeerCommandError(RuntimeError):
    """The peer answered a command with ``ok: false`` (or died before answering)."""


def js_peer_argv() -> list[str]:
    """Command line of the js-libp2p peer (needs ``npm ci --prefix tests/interop``)."""
    return ["node", str(INTEROP_DIR / "js_peer.mjs")]


def py_peer_argv() -> list[str]:
    """Command line of the py-libp2p peer."""
    return [sys.executable, str(INTEROP_DIR / "py_peer.py")]


def glueberry_peer_argv(*args: str) -> list[str]:
    """Command line of a peer running our own stack (``tests/helpers/glueberry_peer.py``)."""
    return [sys.executable, "-m", "helpers.glueberry_peer", *args]


class PeerProcess:
    """A peer in a subprocess. Use ``async with await PeerProcess.start(argv):``."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self.ready: dict[str, Any] = {}
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: list[dict[str, Any]] = []
        self._event_cond = asyncio.Condition()
        self._stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_KEEP)
        self._exited = asyncio.Event()
        self._readers: list[asyncio.Task[None]] = []

    @classmethod
    async def start(
        cls,
        argv: Sequence[str],
        *,
        ready_timeout: float = 20.0,
        env: dict[str, str] | None = None,
        name: str | None = None,
    ) -> Self:
        """Start the peer and wait for its ``ready`` line.

        Raises:
            PeerCommandError: the peer exited or did not get ready in time.
        """
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(TESTS_DIR), str(REPO_ROOT), full_env.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep)
        full_env.update(env or {})
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=full_env,
            cwd=str(TESTS_DIR),
            limit=16 * 1024 * 1024,
        )
        self = cls(proc, name or Path(argv[-1]).name)
        self._readers = [
            asyncio.create_task(self._read_stdout()),
            asyncio.create_task(self._read_stderr()),
        ]
        try:
            self.ready = await self.wait_event(lambda e: e.get("event") == "ready", ready_timeout)
        except BaseException:
            await self.aclose()
            raise
        return self

    # -- properties -------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        """The subprocess id."""
        return self.proc.pid

    @property
    def peer_id(self) -> str:
        """The peer id the subprocess announced."""
        return str(self.ready["peer_id"])

    @property
    def addrs(self) -> list[str]:
        """Its listen multiaddrs, each ending in ``/p2p/<peer id>``."""
        return [str(a) for a in self.ready["addrs"]]

    def stderr_tail(self) -> str:
        """The last lines the peer wrote on stderr (for failure messages)."""
        return "\n".join(self._stderr)

    # -- commands and events --------------------------------------------------------------

    async def command(self, cmd: str, *, timeout: float, **fields: Any) -> dict[str, Any]:
        """Send one command and wait for its reply.

        Raises:
            PeerCommandError: the peer answered ``ok: false`` or exited first.
            TimeoutError: no reply within ``timeout`` seconds.
        """
        self._next_id += 1
        ident = self._next_id
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = fut
        line = json.dumps({"id": ident, "cmd": cmd, **fields}) + "\n"
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line.encode())
            await self.proc.stdin.drain()
            async with asyncio.timeout(timeout):
                reply = await fut
        except TimeoutError:
            raise TimeoutError(
                f"{self.name}: no reply to {cmd!r} within {timeout} s; stderr:\n"
                f"{self.stderr_tail()}"
            ) from None
        finally:
            self._pending.pop(ident, None)
        if not reply.get("ok"):
            raise PeerCommandError(f"{self.name}: {cmd} failed: {reply.get('error')}")
        return reply

    async def wait_event(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any]:
        """Wait for (and consume) the first event matching ``predicate``.

        Raises:
            PeerCommandError: the peer exited first.
            TimeoutError: none within ``timeout`` seconds.
        """
        try:
            async with asyncio.timeout(timeout), self._event_cond:
                while True:
                    for i, event in enumerate(self._events):
                        if predicate(event):
                            del self._events[i]
                            return event
                    if self._exited.is_set():
                        raise PeerCommandError(
                            f"{self.name} exited ({self.proc.returncode}); stderr:\n"
                            f"{self.stderr_tail()}"
                        )
                    await self._event_cond.wait()
        except TimeoutError:
            raise TimeoutError(
                f"{self.name}: no matching event within {timeout} s; stderr:\n{self.stderr_tail()}"
            ) from None

    def events(self) -> list[dict[str, Any]]:
        """Unconsumed events so far."""
        return list(self._events)

    def send_signal(self, sig: signal.Signals) -> None:
        """Send a signal (SIGSTOP, SIGCONT, SIGKILL) to the subprocess."""
        if self.proc.returncode is None:
            self.proc.send_signal(sig)

    # -- lifecycle ------------------------------------------------------------------------------

    async def aclose(self, *, grace: float = 3.0) -> None:
        """Ask the peer to exit, then kill it if it is still there. Never raises."""
        proc = self.proc
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)  # a stopped peer cannot exit
            if proc.stdin is not None and not proc.stdin.is_closing():
                with contextlib.suppress(Exception):
                    proc.stdin.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await proc.wait()
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await proc.wait()
        for task in self._readers:
            task.cancel()
        for task in self._readers:
            with contextlib.suppress(BaseException):
                await task
        self._readers.clear()
        if proc.stdin is not None:
            with contextlib.suppress(Exception):
                proc.stdin.close()
                await proc.stdin.wait_closed()

    async def kill(self) -> None:
        """SIGKILL the subprocess and reap it."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await self.proc.wait()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- readers --------------------------------------------------------------------------------

    async def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        try:
            while line := await self.proc.stdout.readline():
                text = line.decode(errors="replace").strip()
                if not text:
                    continue
                try:
                    msg = json.loads(text)
                except ValueError:
                    self._stderr.append(f"[stdout] {text}")
                    continue
                ident = msg.get("id")
                if ident is not None and "event" not in msg:
                    fut = self._pending.get(ident)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                    continue
                async with self._event_cond:
                    self._events.append(msg)
                    self._event_cond.notify_all()
        finally:
            self._exited.set()
            error = PeerCommandError(f"{self.name} exited; stderr:\n{self.stderr_tail()}")
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(error)
            with contextlib.suppress(RuntimeError):
                async with self._event_cond:
                    self._event_cond.notify_all()

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self._stderr.append(line.decode(errors="replace").rstrip())
