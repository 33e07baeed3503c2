"""``glueberry serve`` bounds client WebSocket messages before buffering them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from api.channels.frames import MAX_CONTROL_FRAME
from api.commands.serve import ws_max_message_size

from .processes import GatewayProcess, create_key

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, str]]:
    data_dir: Path = tmp_path_factory.mktemp("serve-limits")
    key = create_key(data_dir, "admin")
    proc = GatewayProcess(data_dir).start()
    try:
        yield proc, key
    finally:
        proc.stop()


def test_ws_limit_covers_the_largest_legitimate_frame() -> None:
    assert ws_max_message_size(1024 * 1024) > MAX_CONTROL_FRAME
    assert ws_max_message_size(8 * 1024 * 1024) > 8 * 1024 * 1024
    assert ws_max_message_size(1024 * 1024) < 16 * 1024 * 1024  # below uvicorn's default


async def test_oversized_websocket_message_closes_with_1009(
    gateway: tuple[GatewayProcess, str],
) -> None:
    proc, key = gateway
    url = proc.url.replace("http://", "ws://") + "/v1/handshake"
    async with websockets.connect(
        url,
        additional_headers={"Authorization": f"Bearer {key}"},
        open_timeout=10,
        max_size=None,
        compression=None,
    ) as ws:
        await ws.send(b"\x00" * (ws_max_message_size(1024 * 1024) + 1))
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(_drain(ws), 10)  # the server closes instead of answering
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1009  # message too big


async def _drain(ws: websockets.ClientConnection) -> None:
    for _ in range(1000):
        await ws.recv()
