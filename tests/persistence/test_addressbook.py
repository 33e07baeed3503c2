"""Go addressbook.json import/export, and the `glueberry db` / `glueberry peers` commands."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from api.cli import main
from engine.crypto import Identity
from engine.errors import InvalidInputError
from engine.repository import MemoryRepository
from models.addressbook import (
    GO_ZERO_TIME,
    export_addressbook,
    format_time,
    import_addressbook,
    load_addressbook,
    parse_time,
)


def peer() -> tuple[str, str]:
    ident = Identity.generate()
    return ident.peer_id.to_string(), base64.b64encode(ident.public_key).decode()


def go_entry(pid: str, **fields: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "peer_id": pid,
        "multiaddrs": ["/ip4/192.0.2.1/tcp/4001"],
        "last_seen": GO_ZERO_TIME,
        "blacklisted": False,
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-02T00:00:00Z",
    }
    entry.update(fields)
    return entry


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, None),
        ("", None),
        (GO_ZERO_TIME, None),
        ("2024-05-01T10:00:00Z", 1714557600.0),
        ("2024-05-01T12:00:00+02:00", 1714557600.0),
        ("2024-05-01T10:00:00.5Z", 1714557600.5),
        ("2024-05-01T10:00:00.123456789Z", 1714557600.123456789),
    ],
)
def test_parse_time(text: str | None, expected: float | None) -> None:
    assert parse_time(text) == pytest.approx(expected) if expected else parse_time(text) is None


@pytest.mark.parametrize("text", ["yesterday", "2024-13-01T00:00:00Z", "2024-05-01", 5])
def test_parse_time_rejects(text: object) -> None:
    with pytest.raises(InvalidInputError):
        parse_time(text)


def test_format_time_roundtrip() -> None:
    assert format_time(None) == GO_ZERO_TIME
    assert parse_time(format_time(1714557600.25)) == 1714557600.25


async def test_import_outcomes_and_export_roundtrip() -> None:
    good, good_key = peer()
    banned, _ = peer()
    other, _ = peer()
    too_big, _ = peer()
    doc = {
        "version": 1,
        "peers": {
            good: go_entry(
                good,
                public_key=good_key,
                metadata={"name": "alice"},
                multiaddrs=["/ip4/192.0.2.1/tcp/4001", "not-an-addr"],
                last_seen="2024-05-01T10:00:00Z",
            ),
            banned: go_entry(banned, blacklisted=True),
            "not-a-peer": go_entry("not-a-peer"),
            other: go_entry(good),  # key and entry disagree
            too_big: go_entry(too_big, metadata={"x": "y" * 300}),
        },
    }
    repo = MemoryRepository(256)
    report = await import_addressbook(repo, doc)
    actions = {o.peer_id: (o.action, o.reason) for o in report.outcomes}
    assert actions[good] == ("imported", "")
    assert actions[banned][0] == "banned"
    assert actions["not-a-peer"][0] == "skipped"
    assert "invalid peer id" in actions["not-a-peer"][1]
    assert actions[other][0] == "skipped"
    assert "metadata" in actions[too_big][1]
    assert report.summary() == {"imported": 1, "updated": 0, "banned": 1, "skipped": 3}
    warned = next(o for o in report.outcomes if o.peer_id == good)
    assert len(warned.warnings) == 1
    assert "not-an-addr" in warned.warnings[0]

    rec = await repo.get_peer(good)
    assert rec is not None
    assert rec.addrs == ("/ip4/192.0.2.1/tcp/4001",)
    assert rec.last_seen == 1714557600.0
    assert base64.b64encode(rec.public_key or b"").decode() == good_key
    assert [b.target for b in await repo.list_bans()] == [banned]

    again = await import_addressbook(repo, doc)
    assert again.summary()["skipped"] == 4  # the good one is now "already present"
    replaced = await import_addressbook(repo, doc, replace=True)
    assert replaced.summary()["updated"] == 1

    exported = await export_addressbook(repo)
    assert set(exported["peers"]) == {good, banned}
    assert exported["peers"][banned]["blacklisted"] is True
    out = exported["peers"][good]
    assert out["metadata"] == {"name": "alice"}
    assert out["public_key"] == good_key
    assert parse_time(out["last_seen"]) == 1714557600.0
    fresh = MemoryRepository(256)
    back = await import_addressbook(fresh, json.loads(json.dumps(exported)))
    assert back.summary() == {"imported": 1, "updated": 0, "banned": 1, "skipped": 0}
    original, copied = await repo.get_peer(good), await fresh.get_peer(good)
    assert original is not None
    assert copied is not None
    same = ("peer_id", "addrs", "public_key", "metadata", "last_seen")
    assert [getattr(copied, f) for f in same] == [getattr(original, f) for f in same]


@pytest.mark.parametrize(
    "content",
    ['{"version": 2, "peers": {}}', "[]", "not json", '{"version": 1, "peers": []}'],
)
def test_load_rejects_bad_files(tmp_path: Path, content: str) -> None:
    path = tmp_path / "ab.json"
    path.write_text(content)
    with pytest.raises(InvalidInputError):
        load_addressbook(path)


def test_cli_upgrade_import_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GLUEBERRY_DATABASE_URL", raising=False)
    monkeypatch.setenv("GLUEBERRY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    assert main(["db", "current"]) == 0
    assert "none" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    assert "at revision" in capsys.readouterr().out

    good, _ = peer()
    banned, _ = peer()
    src = tmp_path / "addressbook.json"
    src.write_text(
        json.dumps(
            {
                "version": 1,
                "peers": {
                    good: go_entry(good, metadata={"k": "v"}),
                    banned: go_entry(banned, blacklisted=True),
                    "bad": go_entry("bad"),
                },
            }
        )
    )
    assert main(["peers", "import", str(src)]) == 0
    out = capsys.readouterr().out
    assert "1 imported, 0 updated, 1 banned, 1 skipped" in out
    assert "skipped  bad: invalid peer id" in out
    assert main(["peers", "import", "--json", str(src)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["summary"]["skipped"] == 2

    dest = tmp_path / "export.json"
    assert main(["peers", "export", str(dest)]) == 0
    exported = json.loads(dest.read_text())
    assert exported["version"] == 1
    assert set(exported["peers"]) == {good, banned}
    assert exported["peers"][good]["metadata"] == {"k": "v"}
    assert (tmp_path / "data" / "identity.key").exists()
    capsys.readouterr()
    assert main(["peers", "export"]) == 0
    assert json.loads(capsys.readouterr().out) == exported

    assert main(["peers", "import", str(tmp_path / "missing.json")]) == 1
    assert "cannot read" in capsys.readouterr().err
