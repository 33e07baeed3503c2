"""Stream names: what a valid one looks like, checked at every edge."""

from __future__ import annotations

import re

from engine.errors import InvalidStreamNameError

__all__ = ["STREAM_NAME_PATTERN", "check_stream_name", "check_stream_name_text"]

# Alphanumerics, dot, underscore and hyphen: safe inside a libp2p protocol id and a URL
# path segment, and free of '/', which would change the protocol id's structure.
STREAM_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_stream_name_text(name: str, max_length: int) -> str:
    """Return ``name`` when valid, else raise ``ValueError`` (for settings validation)."""
    if not isinstance(name, str) or not name:
        raise ValueError("stream name must be a non-empty string")
    if len(name) > max_length:
        raise ValueError(f"stream name is {len(name)} characters, limit is {max_length}")
    if STREAM_NAME_PATTERN.fullmatch(name) is None:
        raise ValueError(
            f"stream name {name[:64]!r} may only contain letters, digits, '.', '_' and '-' "
            "and must start with a letter or digit"
        )
    return name


def check_stream_name(name: str, max_length: int) -> str:
    """Return ``name`` when valid.

    Raises:
        InvalidStreamNameError: empty, too long, or characters outside ``[A-Za-z0-9._-]``.
    """
    try:
        return check_stream_name_text(name, max_length)
    except ValueError as exc:
        raise InvalidStreamNameError(str(exc), details={"max_length": max_length}) from None
