"""``/metrics`` exposes the engine's counters and health after a real connection.

Two in-process gateways whose nodes connect over TCP on 127.0.0.1 (auto handshake);
only HTTP is used to read the figures. Label values stay within the engine's enums.
"""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from engine.observability import DropReason, RefusalReason
from models import ApiKeyRepository

from .ws_kit import LiveGateway, pair

__all__ = ["pair"]  # fixture


async def _scrape(http: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def _labels(samples: dict[Any, float], name: str, label: str) -> set[str]:
    return {dict(key)[label] for sample_name, key in samples if sample_name == name}


async def test_engine_counters_and_health_on_metrics(
    pair: tuple[LiveGateway, LiveGateway], api_keys: ApiKeyRepository
) -> None:
    a, b = pair  # a dialed b; both established
    token = (await api_keys.create("ops", ["admin"])).token
    async with a.client(token) as http_a, b.client(token) as http_b:
        sa, sb = await _scrape(http_a), await _scrape(http_b)
        assert _value(sa, "glueberry_connections_opened_total", direction="outbound") == 1
        assert _value(sa, "glueberry_connections_opened_total", direction="inbound") == 0
        assert _value(sb, "glueberry_connections_opened_total", direction="inbound") == 1
        for s in (sa, sb):
            assert _value(s, "glueberry_handshakes_total", outcome="ok") == 1
            assert _value(s, "glueberry_handshake_duration_seconds_count") == 1
            assert 0 < _value(s, "glueberry_handshake_duration_seconds_sum") < 10
            assert _value(s, "glueberry_node_ready") == 1
            assert _value(s, "glueberry_reconnect_attempts_total") == 0
            assert 0 <= _value(s, "glueberry_engine_event_loop_lag_seconds") < 10
            assert _value(s, "glueberry_pending_connections") == 0
            # Every reason is a series from the first scrape, and only the enum values.
            assert _labels(s, "glueberry_messages_dropped_total", "reason") == {
                r.value for r in DropReason
            }
            assert _labels(s, "glueberry_connections_refused_total", "reason") == {
                r.value for r in RefusalReason
            }
            assert (
                sum(v for (n, _), v in s.items() if n == "glueberry_connections_refused_total") == 0
            )

        # A ban drops the connection (closed, by error code) and refuses the next dial.
        response = await http_a.post("/v1/blacklist", json={"target": str(b.node.peer_id)})
        assert response.status_code == 201, response.text
        response = await http_a.post(f"/v1/peers/{b.node.peer_id}/connect")
        assert response.status_code == 403, response.text
        sa = await _scrape(http_a)
        closed = {
            dict(k)["error_code"]: v
            for (n, k), v in sa.items()
            if n == "glueberry_connections_closed_total"
        }
        assert sum(closed.values()) == 1, closed
        assert set(closed) <= {"none", "peer_blacklisted", "connection_closed"}
        refused = _value(sa, "glueberry_connections_refused_total", reason="blacklisted_peer")
        assert refused >= 1
