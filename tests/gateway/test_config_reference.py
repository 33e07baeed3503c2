"""The committed configuration reference matches the settings classes."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.config_reference import DEFAULT_PATH, main, render, settings_rows
from api.settings import GatewaySettings
from engine.config import Config
from models.settings import DatabaseSettings


def test_committed_configuration_reference_is_current() -> None:
    assert DEFAULT_PATH.exists(), "run: python -m api.config_reference --write"
    assert DEFAULT_PATH.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md is stale; run: python -m api.config_reference --write"
    )


def test_every_setting_is_documented_once() -> None:
    text = render()
    for cls in (GatewaySettings, Config, DatabaseSettings):
        for name in cls.model_fields:
            variable = f"GLUEBERRY_{name.upper()}"
            assert text.count(f"| `{variable}` |") == 1, variable


def test_rows_show_defaults_and_bounds() -> None:
    rows = {row["name"]: row for row in settings_rows(GatewaySettings)}
    assert rows["http_port"]["default"] == "`8080`"
    assert rows["http_port"]["constraints"] == "≥ 0, ≤ 65535"
    # Bounds nested in `Annotated[...] | None` are found too.
    assert rows["p2p_port"]["constraints"] == "≥ 0, ≤ 65535"
    assert rows["p2p_port"]["type"] == "integer (optional)"
    assert rows["max_body_size"]["default"] == "`2097152` (2 MiB)"
    engine = {row["name"]: row for row in settings_rows(Config)}
    assert engine["handshake_mode"]["type"] == "`auto` \\| `app`"
    assert engine["agent_version"]["constraints"] == "at most 256 characters"


class _WithSecret(GatewaySettings):
    database_url: str | None = "postgresql+asyncpg://admin:hunter2@db:5432/glueberry"


def test_secret_defaults_are_never_printed() -> None:
    rows = {row["name"]: row for row in settings_rows(_WithSecret)}
    assert rows["database_url"]["default"] == "*(set)*"
    assert rows["database_url"]["description"].startswith("*secret.*")
    assert "hunter2" not in str(rows)
    assert "hunter2" not in render()
    assert "@" not in DEFAULT_PATH.read_text(encoding="utf-8").split("## Gateway")[1]


def test_check_flag_detects_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "configuration.md"
    assert main(["--write", "--out", str(out)]) == 0
    assert main(["--check", "--out", str(out)]) == 0
    out.write_text(out.read_text(encoding="utf-8") + "edited\n", encoding="utf-8")
    assert main(["--check", "--out", str(out)]) == 1
    assert "stale" in capsys.readouterr().err
