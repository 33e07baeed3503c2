"""Test helpers: subprocess peers (our stack, py-libp2p, js-libp2p) and test protocols."""

__all__: list[str] = []
