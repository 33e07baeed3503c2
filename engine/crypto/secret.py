"""Key material in a mutable buffer that is zeroed when no longer needed.

Python's ``bytes`` are immutable and may be copied freely by the interpreter, so secrets
live in a :class:`SecretBytes`: a ``bytearray`` we own, optionally ``mlock``-ed so it is
not swapped out, overwritten with zeros on :meth:`SecretBytes.close`, on context exit and
at finalisation. What this can and cannot guarantee is written down in docs/security.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hmac
import logging
import sys
import weakref
from collections.abc import Iterator
from typing import NoReturn

from engine.errors import CryptoError

__all__ = ["SecretBytes", "scrub_bytes", "secure_zero"]

_log = logging.getLogger(__name__)


def secure_zero(buf: bytearray | memoryview) -> None:
    """Overwrite ``buf`` with zeros in place.

    ``ctypes.memset`` writes through the buffer's address, so no optimiser can drop it (the
    Go bug in plan 0.1 cannot happen in CPython, but we take the belt-and-braces route).
    """
    view = memoryview(buf).cast("B")
    try:
        n = len(view)
        if n == 0:
            return
        if view.readonly:
            raise CryptoError("cannot zero a read-only buffer")
        addr = ctypes.addressof(ctypes.c_char.from_buffer(view))
        ctypes.memset(addr, 0, n)
    finally:
        view.release()


# Offset of the character array inside a CPython ``bytes`` object (``ob_sval``); the
# object header is ``__basicsize__ - 1`` bytes long (the trailing NUL is counted in it).
_BYTES_DATA_OFFSET = bytes.__basicsize__ - 1


def _probe_refcount(data: bytes) -> int:
    # Same shape as the check in scrub_bytes: a parameter handed to sys.getrefcount.
    return sys.getrefcount(data)


def _sole_owner_refcount() -> int:
    """What ``sys.getrefcount`` reports inside a callee when the caller holds the only
    reference (3 on CPython 3.11; newer interpreters borrow some references, so measure)."""
    probe = bytes(bytearray(16))
    return _probe_refcount(probe)


_SOLE_OWNER_REFS = _sole_owner_refcount()


def scrub_bytes(data: bytes) -> bool:
    """Best effort: overwrite the contents of an immutable ``bytes`` object with zeros.

    Some APIs (``hashlib``, ``cryptography``'s ``exchange`` and ``derive``) hand secrets
    back as ``bytes``. When the caller holds the *only* reference to such a freshly made
    object, nothing else can observe it, so zeroing it in place removes one lingering copy.
    The function refuses (returns ``False``) unless that is the case: not CPython, not
    exactly ``bytes``, shorter than two bytes (interned singletons), or referenced
    elsewhere. Never call it on a ``bytes`` object that may be shared (constants,
    dictionary keys, anything hashed).

    Args:
        data: the object to scrub; the caller must drop its reference afterwards.

    Returns:
        Whether the bytes were zeroed.
    """
    if sys.implementation.name != "cpython" or type(data) is not bytes or len(data) < 2:
        return False
    if sys.getrefcount(data) > _SOLE_OWNER_REFS:
        return False
    ctypes.memset(id(data) + _BYTES_DATA_OFFSET, 0, len(data))
    return True


class _Libc:
    """Lazily loaded ``mlock`` / ``munlock``; absent on platforms without them."""

    _lib: ctypes.CDLL | None = None
    _tried = False

    @classmethod
    def get(cls) -> ctypes.CDLL | None:
        if not cls._tried:
            cls._tried = True
            if sys.platform.startswith(("linux", "darwin", "freebsd")):
                name = ctypes.util.find_library("c")
                try:
                    lib = ctypes.CDLL(name, use_errno=True)
                    lib.mlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
                    lib.munlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
                    cls._lib = lib
                except (OSError, AttributeError):
                    cls._lib = None
        return cls._lib


def _release(buf: bytearray, locked: bool) -> None:
    """Finaliser body: zero (and unlock) the buffer. Must not reference the owner."""
    if not buf:
        return
    with contextlib.suppress(BufferError):  # a view still exported: zero via slice
        secure_zero(buf)
    if any(buf):  # pragma: no cover - only when memset could not run
        buf[:] = bytes(len(buf))
    if locked:
        lib = _Libc.get()
        if lib is not None:
            addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
            lib.munlock(addr, len(buf))


class SecretBytes:
    """A secret held in a mutable buffer, zeroed on close, context exit and finalisation.

    Args:
        data: the secret; when a ``bytearray`` is given it is copied and *the argument is
            zeroed*, so the caller's copy does not linger.
        lock: try to ``mlock`` the buffer (best effort: failure is logged at debug level,
            never raised).

    The secret is reachable only through :meth:`view` (a context manager yielding a
    read-only memoryview) or :meth:`reveal` (an explicit immutable copy, for APIs that need
    ``bytes``). ``repr`` and ``str`` never show it.
    """

    __slots__ = ("__weakref__", "_buf", "_closed", "_finalizer", "_locked")

    def __init__(self, data: bytes | bytearray | memoryview, *, lock: bool = True) -> None:
        self._buf = bytearray(data)
        if isinstance(data, bytearray):
            secure_zero(data)
        self._closed = False
        self._locked = bool(lock and self._buf and self._mlock())
        self._finalizer = weakref.finalize(self, _release, self._buf, self._locked)

    def _mlock(self) -> bool:
        lib = _Libc.get()
        if lib is None:
            return False
        addr = ctypes.addressof(ctypes.c_char.from_buffer(self._buf))
        if lib.mlock(addr, len(self._buf)) != 0:
            _log.debug("mlock failed (errno %d); secret stays swappable", ctypes.get_errno())
            return False
        return True

    @property
    def locked(self) -> bool:
        """Whether the buffer is ``mlock``-ed."""
        return self._locked

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __len__(self) -> int:
        return len(self._buf)

    def _check(self) -> None:
        if self._closed:
            raise CryptoError("secret was closed and zeroed")

    @contextlib.contextmanager
    def view(self) -> Iterator[memoryview]:
        """Yield a read-only view of the secret, released on exit."""
        self._check()
        mv = memoryview(self._buf).toreadonly()
        try:
            yield mv
        finally:
            mv.release()

    def reveal(self) -> bytes:
        """Return an immutable copy. Prefer :meth:`view`: this copy cannot be zeroed."""
        self._check()
        return bytes(self._buf)

    def buffer_address(self) -> int:
        """Address of the underlying buffer (for memory-inspection tests)."""
        return ctypes.addressof(ctypes.c_char.from_buffer(self._buf))

    def close(self) -> None:
        """Zero the buffer (and unlock it). Idempotent."""
        if not self._closed:
            self._closed = True
            self._finalizer()

    def __enter__(self) -> SecretBytes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __eq__(self, other: object) -> bool:
        # Constant-time comparison; comparing a closed secret is a bug.
        if not isinstance(other, SecretBytes):
            return NotImplemented
        with self.view() as mine, other.view() as theirs:
            return hmac.compare_digest(mine, theirs)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._buf)} bytes"
        return f"<SecretBytes {state}>"

    __str__ = __repr__

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        # Pickling would write the key bytes wherever the pickle goes (caches, queues
        # to other processes, crash dumps), and copy.copy would share the buffer with an
        # object that has no finaliser of its own: both are refused.
        raise TypeError("SecretBytes cannot be pickled or copied; use reveal() explicitly")

    def __copy__(self) -> NoReturn:
        raise TypeError("SecretBytes cannot be copied; use SecretBytes(secret.reveal())")

    def __deepcopy__(self, memo: object) -> NoReturn:
        raise TypeError("SecretBytes cannot be copied; use SecretBytes(secret.reveal())")
