"""The `glueberry keygen` and `glueberry apikey` commands (real subprocesses)."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest

from engine.crypto.identity import Identity

from .processes import GatewayProcess, create_key, run_cli

pytestmark = pytest.mark.slow


def test_keygen_creates_once_and_prints_peer_id(tmp_path: Path) -> None:
    first = run_cli(tmp_path, "keygen").stdout.strip().splitlines()[-1]
    key_path = tmp_path / "identity.key"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert str(Identity.load(key_path).peer_id) == first
    again = run_cli(tmp_path, "keygen").stdout.strip().splitlines()[-1]
    assert again == first  # an existing key is kept
    other = tmp_path / "other.key"
    created = run_cli(tmp_path, "keygen", "--out", str(other)).stdout.strip()
    assert created != first
    replaced = run_cli(tmp_path, "keygen", "--out", str(other), "--force").stdout.strip()
    assert replaced != created


def test_apikey_create_list_revoke(tmp_path: Path) -> None:
    token = create_key(tmp_path, "monitor", "streams:send")
    assert token.startswith("gb_")
    key_id = token.split("_")[1]
    listed = [
        json.loads(line)
        for line in run_cli(tmp_path, "apikey", "list", "--json").stdout.splitlines()
    ]
    assert [(k["key_id"], k["scopes"], k["revoked_at"]) for k in listed] == [
        (key_id, ["monitor", "streams:send"], None)
    ]
    assert token not in run_cli(tmp_path, "apikey", "list").stdout  # never the secret
    run_cli(tmp_path, "apikey", "revoke", key_id)
    listed = json.loads(run_cli(tmp_path, "apikey", "list", "--json").stdout)
    assert listed["revoked_at"] is not None
    with pytest.raises(subprocess.CalledProcessError) as failure:
        run_cli(tmp_path, "apikey", "revoke", "0000000000000000")
    assert "api_key_not_found" in failure.value.stderr
    with pytest.raises(subprocess.CalledProcessError):
        run_cli(tmp_path, "apikey", "create", "--scope", "root")


def test_serve_says_how_to_get_a_key_until_one_exists(tmp_path: Path) -> None:
    hint = "no API key yet"
    gateway = GatewayProcess(tmp_path).start()
    try:
        assert hint in gateway.log()
        assert f"GLUEBERRY_DATA_DIR={tmp_path} glueberry apikey create --scope admin" in (
            gateway.log()
        )
    finally:
        gateway.stop()
    create_key(tmp_path, "monitor")
    gateway.start()
    try:
        assert gateway.log().count(hint) == 1  # the second start printed no hint
    finally:
        gateway.stop()
