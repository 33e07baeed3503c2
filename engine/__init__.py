"""Glueberry engine: the embeddable P2P messaging library (no FastAPI, no SQLAlchemy)."""

from engine.config import Config, HandshakeMode
from engine.errors import GlueberryError

__all__ = ["Config", "GlueberryError", "HandshakeMode"]
