"""engine.config.Config: defaults, environment, and validation messages."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from engine.config import Config, HandshakeMode


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defaults are asserted below: settings exported by the caller's shell must not leak in."""
    for name in list(os.environ):
        if name.startswith("GLUEBERRY_"):
            monkeypatch.delenv(name)


def test_defaults_are_valid_and_sensible() -> None:
    config = Config()
    assert config.low_watermark < config.high_watermark
    assert config.reconnect_base_delay <= config.reconnect_max_delay
    assert config.keepalive_interval < config.keepalive_timeout
    assert config.max_message_size == 1024 * 1024
    assert config.handshake_mode is HandshakeMode.AUTO
    assert config.nonce_warning_threshold == 2**40
    assert config.key_path == Path("./glueberry-data/identity.key")
    assert all(addr.startswith("/ip4/127.0.0.1/") for addr in config.listen_addrs)


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLUEBERRY_MAX_MESSAGE_SIZE", "4096")
    monkeypatch.setenv("GLUEBERRY_HANDSHAKE_MODE", "app")
    monkeypatch.setenv("GLUEBERRY_LISTEN_ADDRS", '["/ip4/0.0.0.0/tcp/4001"]')
    config = Config()
    assert config.max_message_size == 4096
    assert config.handshake_mode is HandshakeMode.APP
    assert config.listen_addrs == ["/ip4/0.0.0.0/tcp/4001"]
    # Keyword arguments win over the environment.
    assert Config(max_message_size=8192).max_message_size == 8192


def test_invalid_environment_value_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLUEBERRY_HIGH_WATERMARK", "lots")
    with pytest.raises(ValidationError, match="high_watermark"):
        Config()


def test_frozen() -> None:
    config = Config()
    with pytest.raises(ValidationError):
        config.max_message_size = 10  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"low_watermark": 10, "high_watermark": 10},
            r"low_watermark \(10\) must be below high_watermark \(10\)",
        ),
        (
            {"low_watermark": 20, "high_watermark": 10},
            r"low_watermark \(20\) must be below high_watermark \(10\)",
        ),
        (
            {"reconnect_base_delay": 10.0, "reconnect_max_delay": 5.0},
            r"reconnect_base_delay \(10.0\) must not exceed reconnect_max_delay \(5.0\)",
        ),
        (
            {"keepalive_interval": 15.0, "keepalive_timeout": 15.0},
            r"keepalive_interval \(15.0\) must be below keepalive_timeout \(15.0\)",
        ),
        (
            {"default_streams": ["a" * 20], "max_stream_name_length": 10},
            r"longer than max_stream_name_length \(10\)",
        ),
        ({"default_streams": ["bad name!"]}, r"may only contain letters, digits"),
        ({"listen_addrs": ["not-a-multiaddr"]}, r"invalid listen multiaddr 'not-a-multiaddr'"),
        ({"max_message_size": 10}, r"max_message_size"),
        ({"max_message_size": 128 * 1024 * 1024}, r"max_message_size"),
        ({"handshake_timeout": 0}, r"handshake_timeout"),
        ({"handshake_timeout": -1}, r"handshake_timeout"),
        ({"reconnect_jitter": 1.5}, r"reconnect_jitter"),
        ({"reconnect_max_attempts": -1}, r"reconnect_max_attempts"),
        ({"yamux_window_size": 1024}, r"yamux_window_size"),
        ({"handshake_mode": "manual"}, r"handshake_mode"),
        ({"nonce_warning_threshold": 0}, r"nonce_warning_threshold"),
    ],
)
def test_validation_messages(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Config(**kwargs)  # type: ignore[arg-type]


def test_boundaries_accepted() -> None:
    config = Config(
        low_watermark=0,
        high_watermark=1,
        reconnect_base_delay=5.0,
        reconnect_max_delay=5.0,
        reconnect_max_attempts=0,
        max_message_size=64,
        failed_handshake_cooldown=0,
    )
    assert config.reconnect_max_attempts == 0
    assert config.max_message_size == 64


def test_key_path_joins_data_dir(tmp_path: Path) -> None:
    config = Config(data_dir=tmp_path, key_file="node.key")
    assert config.key_path == tmp_path / "node.key"


def test_unknown_settings_are_ignored() -> None:
    config = Config(not_a_setting=1)  # type: ignore[call-arg]
    assert not hasattr(config, "not_a_setting")
