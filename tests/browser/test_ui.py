"""The monitoring page at ``/ui`` in a real headless Chromium against real gateways.

The page is driven the way a person would: type the key, click buttons, read what is on
screen. What the page shows about connection states must come from the live SSE events
(the event log only ever grows from them), and peer-supplied text must stay text.
Waits are Playwright's auto-retrying ``expect`` with a deadline, never sleeps.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.routes.ui import CONTENT_SECURITY_POLICY
from api.settings import GatewaySettings
from engine.crypto.identity import Identity

from .conftest import UI_TIMEOUT_MS, Node

pytestmark = pytest.mark.slow

HOSTILE_NAME = '<img src=x onerror="window.__xss=1">'
HOSTILE_NOTE = "</td><script>window.__xss=2</script>"

# Runs before the page's own script: records CSP violations (an injected inline handler
# or script would show up here even though the CSP blocks it).
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(e.violatedDirective + " " + e.blockedURI);
});
"""


def _expect() -> Any:
    from playwright.sync_api import expect

    expect.set_options(timeout=UI_TIMEOUT_MS)
    return expect


def _open(browser: Any, node: Node) -> Any:
    """A new tab on the node's /ui that records script errors in ``page.errors``."""
    page = browser.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(f"uncaught: {error}"))
    page.on(
        "console",
        lambda message: (
            page.errors.append(message.text)
            if message.type == "error" and not message.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.add_init_script(RECORD_VIOLATIONS)
    page.goto(f"{node.url}/ui")
    return page


def _close(page: Any) -> None:
    """Close the tab; the page logged no script error and no CSP violation."""
    assert page.evaluate("window.__violations") == []
    errors = list(page.errors)
    page.close()
    assert errors == []


def _sign_in(page: Any, node: Node, key: str) -> None:
    expect = _expect()
    page.fill("#api-key", key)
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#node-peer-id")).to_have_text(node.peer_id)
    expect(page.locator("#live")).to_have_text("live")


def _row(page: Any, peer_id: str) -> Any:
    return page.locator(f'#peers-body tr[data-peer-id="{peer_id}"]')


def _ensure_peer(a: Node, b: Node) -> None:
    response = a.http.post("/v1/peers", json={"peer_id": b.peer_id, "addrs": [b.proc.p2p_addr]})
    assert response.status_code in (201, 409), response.text


# -- the static files (no browser needed) ------------------------------------------------


@pytest.fixture
async def static_client(tmp_path: Path) -> Any:
    settings = GatewaySettings(_env_file=None, data_dir=tmp_path, http_port=0)  # type: ignore[call-arg]
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        yield app, client


async def test_static_files_served_without_key_with_strict_csp(static_client: Any) -> None:
    app, client = static_client
    expected = {
        "/ui": "text/html",
        "/ui/": "text/html",
        "/ui/app.js": "text/javascript",
        "/ui/style.css": "text/css",
        "/ui/favicon.svg": "image/svg+xml",
    }
    bodies = {}
    for path, media_type in expected.items():
        response = await client.get(path)  # no Authorization header
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith(media_type), path
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        bodies[path] = response.text
    policy = dict(d.split(" ", 1) for d in CONTENT_SECURITY_POLICY.split("; "))
    assert policy["script-src"] == "'self'"
    assert policy["default-src"] == "'none'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY
    html = bodies["/ui"]
    # No inline script, no inline handlers or styles, no remote resources.
    assert re.findall(r"<script\b[^>]*>", html) == ['<script type="module" src="/ui/app.js">']
    assert re.search(r"\son[a-z]+\s*=", html) is None
    assert re.search(r"\sstyle\s*=", html) is None
    for path, text in bodies.items():
        assert "https://" not in text, path
        assert re.sub(r'xmlns="http://www\.w3\.org/2000/svg"', "", text).count("http://") == 0
    script = bodies["/ui/app.js"]
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script
    assert "localStorage" not in script  # the key lives in sessionStorage only
    # Not part of the REST contract.
    assert not any(p.startswith("/ui") for p in app.openapi()["paths"])
    assert (await client.get("/ui/missing.js")).status_code == 404


# -- in the browser --------------------------------------------------------------------


def test_connect_through_page_shows_established_from_live_events(
    browser: Any, nodes: tuple[Node, Node], screenshot_dir: Path
) -> None:
    expect = _expect()
    a, b = nodes
    page = _open(browser, a)
    _sign_in(page, a, a.admin_key)
    expect(page.locator("#node-addrs li").first).to_contain_text(f"/p2p/{a.peer_id}")
    expect(page.locator("#node-scopes")).to_have_text("admin")
    # The key is in sessionStorage, never in the URL.
    assert a.admin_key not in page.url
    assert page.evaluate("sessionStorage.getItem('glueberry.apiKey')") == a.admin_key

    # Add B through the page's form, then connect through the row's button.
    page.fill("#add-peer-id", b.peer_id)
    page.fill("#add-peer-addr", b.proc.p2p_addr)
    page.fill("#add-peer-name", "node b")
    page.click("#add-peer button[type=submit]")
    row = _row(page, b.peer_id)
    expect(row.locator(".name")).to_have_text("node b")
    row.locator(".connect-btn").click()

    # The state cell and the event log follow the SSE events to Established.
    expect(row.locator(".state-cell")).to_have_text("established")
    established = page.locator(
        f'#events-log li[data-peer-id="{b.peer_id}"][data-state="established"]'
    )
    expect(established).to_have_count(1)
    expect(page.locator("#peers-summary")).to_contain_text("1 established")
    assert a.http.get(f"/v1/peers/{b.peer_id}/connection").json()["state"] == "established"

    # Per-peer view: connection facts and statistics.
    row.locator(".stats-btn").click()
    expect(page.locator("#detail-peer-id")).to_have_text(b.peer_id)
    expect(page.locator("#detail-facts")).to_contain_text("metadata.name")
    expect(page.locator("#detail-counters")).to_contain_text("connect_count")

    shot = screenshot_dir / "ui-connected.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    _close(page)


def test_hostile_metadata_renders_as_text(
    browser: Any, nodes: tuple[Node, Node], screenshot_dir: Path
) -> None:
    expect = _expect()
    a, _ = nodes
    peer_id = str(Identity.generate().peer_id)
    response = a.http.post(
        "/v1/peers",
        json={"peer_id": peer_id, "metadata": {"name": HOSTILE_NAME, "note": HOSTILE_NOTE}},
    )
    assert response.status_code == 201, response.text
    page = _open(browser, a)
    _sign_in(page, a, a.monitor_key)
    row = _row(page, peer_id)
    expect(row.locator(".name")).to_have_text(HOSTILE_NAME)
    row.locator(".stats-btn").click()
    expect(page.locator("#detail-facts")).to_contain_text(HOSTILE_NOTE)
    expect(page.locator("#detail-facts")).to_contain_text(HOSTILE_NAME)
    page.screenshot(path=str(screenshot_dir / "ui-hostile.png"), full_page=True)
    # Nothing was parsed as markup: no element was created, no handler ran or was blocked.
    assert page.locator("img").count() == 0
    assert page.locator("script").count() == 1
    assert page.evaluate("window.__xss") is None
    _close(page)


def test_refused_key_then_monitor_key_is_read_only(browser: Any, nodes: tuple[Node, Node]) -> None:
    expect = _expect()
    a, _ = nodes
    page = _open(browser, a)
    page.fill("#api-key", "gbk_not-a-key")
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#signin-error")).to_contain_text("refused")
    assert page.evaluate("sessionStorage.getItem('glueberry.apiKey')") is None

    _sign_in(page, a, a.monitor_key)  # live events work with a monitor-only ticket
    expect(page.locator("#whoami")).to_have_text("scopes: monitor")
    expect(page.locator("#page-info")).to_contain_text(" of ")
    assert page.locator("#peers-body .stats-btn").count() >= 1
    assert page.locator("#peers-body .connect-btn").count() == 0
    assert page.locator("#peers-body .disconnect-btn").count() == 0
    expect(page.locator("#add-peer")).to_be_hidden()

    # A reload keeps the session (sessionStorage); signing out forgets the key.
    page.reload()
    expect(page.locator("#node-peer-id")).to_have_text(a.peer_id)
    page.click("#signout")
    expect(page.locator("#signin")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('glueberry.apiKey')") is None
    _close(page)


def test_peer_list_is_paginated(browser: Any, nodes: tuple[Node, Node]) -> None:
    expect = _expect()
    _, b = nodes
    for index in range(23):
        peer_id = str(Identity.generate().peer_id)
        response = b.http.post(
            "/v1/peers", json={"peer_id": peer_id, "metadata": {"name": f"peer {index}"}}
        )
        assert response.status_code == 201, response.text
    total = b.http.get("/v1/peers", params={"limit": 1}).json()["total"]
    assert total >= 23
    page = _open(browser, b)
    _sign_in(page, b, b.monitor_key)
    expect(page.locator("#page-info")).to_have_text(f"1\u201320 of {total}")
    expect(page.locator("#peers-body tr")).to_have_count(20)
    expect(page.locator("#page-prev")).to_be_disabled()
    first_page = page.locator("#peers-body tr").first.get_attribute("data-peer-id")
    page.click("#page-next")
    expect(page.locator("#page-info")).to_have_text(f"21\u2013{total} of {total}")
    expect(page.locator("#peers-body tr")).to_have_count(total - 20)
    expect(page.locator("#page-next")).to_be_disabled()
    assert page.locator(f'#peers-body tr[data-peer-id="{first_page}"]').count() == 0
    page.click("#page-prev")
    expect(page.locator("#page-info")).to_have_text(f"1\u201320 of {total}")
    _close(page)


def test_node_restart_shows_reset_notice_and_stream_resumes(
    browser: Any, nodes: tuple[Node, Node], screenshot_dir: Path
) -> None:
    expect = _expect()
    a, b = nodes
    _ensure_peer(a, b)
    page = _open(browser, a)
    _sign_in(page, a, a.admin_key)
    # Make events the page sees, so its cursor is past 0.
    a.http.post(f"/v1/peers/{b.peer_id}/disconnect").raise_for_status()
    a.http.post(
        f"/v1/peers/{b.peer_id}/connect", json={"wait": True, "timeout": 20}
    ).raise_for_status()
    last = a.http.get("/v1/events", params={"since": 0}).json()["next_cursor"]
    assert last > 0
    page.wait_for_function(
        "n => Number((document.getElementById('events-cursor').textContent.match(/\\d+/) "
        "|| ['0'])[0]) >= n",
        arg=last,
    )

    # Crash A and start it again on the same HTTP port, without dialing its address
    # book: the new run's event ids start over, so the page's cursor is ahead of it.
    port = int(a.url.rsplit(":", 1)[1])
    assert a.proc.proc is not None
    a.proc.proc.kill()
    a.proc.proc.wait()
    a.proc.stop()
    a.proc.extra_env = {"GLUEBERRY_AUTO_CONNECT": "false"}
    a.proc.start(http_port=port)

    notice = page.locator(".reset-notice")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("restarted")
    expect(page.locator("#live")).to_have_text("live")
    expect(page.locator('#events-log li[data-kind="reset"]')).to_have_count(1)
    # The snapshot after the reset replaced the states: B is not connected in this run.
    expect(_row(page, b.peer_id).locator(".state-cell")).to_have_text("disconnected")
    page.screenshot(path=str(screenshot_dir / "ui-reset.png"), full_page=True)
    _close(page)
