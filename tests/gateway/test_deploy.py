"""docker-compose.yml and Dockerfile, checked without a Docker engine.

`docker compose config` cannot run here, so the compose file is parsed with PyYAML and
checked for what matters: the services, their healthchecks and start order, that the two
nodes bootstrap each other, and that every GLUEBERRY_ variable is a real setting.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from api.settings import GatewaySettings
from engine.config import Config
from models.settings import DatabaseSettings

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(document, dict)
    return document


def _known_settings() -> set[str]:
    names: set[str] = set()
    for cls in (GatewaySettings, Config, DatabaseSettings):
        names |= {f"GLUEBERRY_{name.upper()}" for name in cls.model_fields}
    return names


def test_compose_services_and_healthchecks() -> None:
    services = _compose()["services"]
    assert {"postgres", "redis", "node-a", "node-b"} <= set(services)
    for name in ("postgres", "redis", "node-a", "node-b"):
        check = services[name]["healthcheck"]
        assert check["test"], name
        assert check["interval"], name
        assert check["retries"], name
    for name in ("node-a", "node-b"):
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["keys"]["condition"] == "service_completed_successfully"
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["environment"]["GLUEBERRY_MIGRATE_ON_START"] == "false"
        env = services[name]["environment"]
        assert env["GLUEBERRY_DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert env["GLUEBERRY_DATABASE_URL"].split("@")[1].startswith("postgres:")
        assert env["GLUEBERRY_REDIS_URL"].startswith("redis://redis:")
        assert "/readyz" in " ".join(services[name]["healthcheck"]["test"])
        assert any(str(p).endswith(":8080") for p in services[name]["ports"])


def test_nodes_bootstrap_each_other() -> None:
    services = _compose()["services"]
    for me, other in (("node-a", "node-b"), ("node-b", "node-a")):
        command = " ".join(services[me]["command"])
        match = re.search(r"GLUEBERRY_BOOTSTRAP_PEERS=\"/dns4/([\w-]+)/tcp/4001/p2p/", command)
        assert match, command
        assert match.group(1) == other, command
        # The other node's peer id is read from the key the `keys` service created.
        assert f"keygen --out /keys/{other}.key" in command
        assert services[me]["environment"]["GLUEBERRY_KEY_FILE"] == f"/keys/{me}.key"
        assert "exec glueberry serve" in command
    migrate = services["migrate"]
    assert migrate["command"] == ["db", "upgrade"]
    assert (
        migrate["environment"]["GLUEBERRY_DATABASE_URL"]
        == services["node-a"]["environment"]["GLUEBERRY_DATABASE_URL"]
    )
    keys_command = " ".join(services["keys"]["command"])
    assert "/keys/node-a.key" in keys_command
    assert "/keys/node-b.key" in keys_command


def test_compose_variables_are_real_settings() -> None:
    known = _known_settings()
    for name, service in _compose()["services"].items():
        for variable in service.get("environment", {}) or {}:
            if variable.startswith("GLUEBERRY_"):
                assert variable in known, f"{name}: unknown setting {variable}"


def test_dockerfile_has_healthcheck_and_serves() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^HEALTHCHECK .*", text, re.M)
    assert "/healthz" in text
    assert 'ENTRYPOINT ["glueberry"]' in text
    assert 'CMD ["serve"]' in text
    assert re.search(r"^USER (?!root)", text, re.M)
    for variable in re.findall(r"(GLUEBERRY_\w+)=", text):
        assert variable in _known_settings(), variable
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".git" in ignored
    assert ".venv" in ignored
    assert ".env" in ignored
