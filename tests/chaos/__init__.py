"""Chaos tests: faults injected between real nodes (partition, drops, latency, corruption)."""

__all__: list[str] = []
