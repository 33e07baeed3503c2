"""Fixtures of the browser tests: headless Chromium driven by Playwright, real gateways.

Chromium is Debian's (``apt-get install -y chromium``; ``GLUEBERRY_TEST_CHROMIUM``
points elsewhere); Playwright only drives it (its own browser download is never used).
Without either, every test here is skipped with the reason. The gateways are real
``glueberry serve`` processes (:mod:`gateway.processes`), each with its own data dir.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gateway.processes import TIMEOUT_FACTOR, GatewayProcess, create_key

CHROMIUM = (
    os.environ.get("GLUEBERRY_TEST_CHROMIUM")
    or shutil.which("chromium")
    or shutil.which("chromium-browser")
)
NO_CHROMIUM = (
    "Chromium is not installed: apt-get update && apt-get install -y chromium "
    "(or set GLUEBERRY_TEST_CHROMIUM to a Chromium binary)"
)
NO_PLAYWRIGHT = "the playwright package is not installed (pip install -e '.[test]')"

LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

#: Longest wait for something the page shows (milliseconds, scaled).
UI_TIMEOUT_MS = 15_000 * TIMEOUT_FACTOR


class Node:
    """A running gateway with an admin and a monitor-only key."""

    def __init__(self, proc: GatewayProcess, admin_key: str, monitor_key: str) -> None:
        self.proc = proc
        self.admin_key = admin_key
        self.monitor_key = monitor_key
        self.http = proc.client(admin_key)

    @property
    def peer_id(self) -> str:
        return self.proc.peer_id

    @property
    def url(self) -> str:
        return self.proc.url

    def close(self) -> None:
        self.http.close()
        self.proc.stop()


@pytest.fixture(scope="package")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A headless Chromium (persistent context on a fresh user-data-dir)."""
    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    if importlib.util.find_spec("playwright") is None:
        pytest.skip(NO_PLAYWRIGHT)
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=LAUNCH_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        context.set_default_timeout(UI_TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="package")
def nodes(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node]]:
    """Two real gateways A and B (not connected yet)."""
    started: list[Node] = []
    try:
        for name in ("a", "b"):
            data_dir = tmp_path_factory.mktemp(f"ui-node-{name}")
            admin = create_key(data_dir, "admin")
            monitor = create_key(data_dir, "monitor")
            started.append(Node(GatewayProcess(data_dir).start(), admin, monitor))
        yield started[0], started[1]
    finally:
        for node in started:
            node.close()


@pytest.fixture
def screenshot_dir(tmp_path: Path) -> Path:
    """Where a test saves screenshots (``GLUEBERRY_UI_SCREENSHOTS`` keeps them)."""
    kept = os.environ.get("GLUEBERRY_UI_SCREENSHOTS")
    if kept:
        path = Path(kept)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path
