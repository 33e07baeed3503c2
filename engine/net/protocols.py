"""The stream handler table of a host: exact protocol ids and unannounced families.

A host accepts an inbound stream when multistream-select agrees on a protocol id the
table *contains*. Exact ids (:meth:`ProtocolTable.set`) are also *listed*: identify
announces them and multistream ``ls`` answers with them. A family
(:meth:`ProtocolTable.set_match`, go-libp2p's ``SetStreamHandlerMatch``) is a predicate
over protocol ids: negotiation accepts every id it matches, but the ids are never listed,
so a peer cannot learn which ids of the family a host serves (the Glueberry node serves
``/glueberry/stream/{name}/1.0.0`` this way: stream names stay private).

Exact ids win over families; families are tried in registration order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from engine.net.interface import StreamHandler

__all__ = ["ProtocolMatch", "ProtocolTable"]

ProtocolMatch = Callable[[str], bool]
"""Decides whether a protocol id belongs to a family (must be cheap and never raise)."""


class ProtocolTable:
    """Exact handlers (listed) plus family handlers (accepted, never listed).

    As a :class:`~collections.abc.Collection` of protocol ids it is what
    :func:`~engine.net.multistream.listen_select` needs: ``in`` accepts exact ids and
    family members, iteration (``ls``, identify) yields the exact ids only.
    """

    __slots__ = ("_exact", "_families")

    def __init__(self) -> None:
        self._exact: dict[str, StreamHandler] = {}
        self._families: dict[str, tuple[ProtocolMatch, StreamHandler]] = {}

    def set(self, protocol_id: str, handler: StreamHandler) -> None:
        """Serve (and announce) ``protocol_id`` with ``handler``.

        Raises:
            ValueError: an empty id or one with a newline (cannot be negotiated).
        """
        _check_id(protocol_id)
        self._exact[protocol_id] = handler

    def remove(self, protocol_id: str) -> None:
        """Stop serving ``protocol_id`` (no-op when unknown)."""
        self._exact.pop(protocol_id, None)

    def set_match(self, family: str, match: ProtocolMatch, handler: StreamHandler) -> None:
        """Serve every protocol id ``match`` accepts with ``handler``, unannounced.

        Args:
            family: the key of the family (for :meth:`remove_match`); not announced.
            match: the predicate; an exception from it counts as "no match".
            handler: runs for every inbound stream of the family.

        Raises:
            ValueError: an empty family key.
        """
        if not family:
            raise ValueError("empty protocol family")
        self._families[family] = (match, handler)

    def remove_match(self, family: str) -> None:
        """Stop serving the family registered as ``family`` (no-op when unknown)."""
        self._families.pop(family, None)

    def lookup(self, protocol_id: str) -> StreamHandler | None:
        """The handler for ``protocol_id``: the exact one, else the first matching family."""
        handler = self._exact.get(protocol_id)
        if handler is not None:
            return handler
        for match, family_handler in list(self._families.values()):
            if _matches(match, protocol_id):
                return family_handler
        return None

    def listed(self) -> list[str]:
        """The announced (exact) protocol ids, sorted."""
        return sorted(self._exact)

    def __contains__(self, protocol_id: object) -> bool:
        return isinstance(protocol_id, str) and self.lookup(protocol_id) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._exact))

    def __len__(self) -> int:
        return len(self._exact)


def _check_id(protocol_id: str) -> None:
    if not protocol_id or "\n" in protocol_id:
        raise ValueError(f"invalid protocol id {protocol_id[:64]!r}")


def _matches(match: ProtocolMatch, protocol_id: str) -> bool:
    try:
        return bool(match(protocol_id))
    except Exception:
        return False
