"""engine.peer_validation and MemoryRepository specifics (no database)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.crypto import Identity
from engine.errors import (
    InvalidBanTargetError,
    InvalidInputError,
    InvalidMultiaddrError,
    InvalidPeerIdError,
    MetadataTooLargeError,
)
from engine.peer_validation import (
    check_audit_detail,
    check_ban_target,
    check_metadata,
    check_multiaddrs,
    check_peer_id,
    metadata_size,
)
from engine.repository import MemoryRepository, Repository


def test_memory_repository_satisfies_protocol() -> None:
    assert isinstance(MemoryRepository(), Repository)


def test_peer_id_text_and_object() -> None:
    pid = Identity.generate().peer_id
    assert check_peer_id(pid) is pid
    assert check_peer_id(pid.to_string()) == pid
    with pytest.raises(InvalidPeerIdError):
        check_peer_id(b"raw")  # type: ignore[arg-type]


def test_multiaddrs_canonical_and_deduplicated() -> None:
    assert check_multiaddrs(["/ip4/1.2.3.4/tcp/80", "/ip4/1.2.3.4/tcp/80/"]) == (
        "/ip4/1.2.3.4/tcp/80",
    )
    assert check_multiaddrs([]) == ()


@pytest.mark.parametrize("bad", [[1], [b"/ip4/1.2.3.4/tcp/1"], ["/" + "a" * 2000], None])
def test_multiaddrs_rejects(bad: object) -> None:
    with pytest.raises(InvalidMultiaddrError):
        check_multiaddrs(bad)  # type: ignore[arg-type]


@given(st.lists(st.text(max_size=40), max_size=5))
def test_multiaddrs_never_raise_untyped(texts: list[str]) -> None:
    try:
        out = check_multiaddrs(texts)
    except InvalidMultiaddrError:
        return
    assert len(out) <= len(texts)
    assert all(isinstance(a, str) and a for a in out)


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=50), max_size=10))
def test_metadata_limit_is_exact(meta: dict[str, str]) -> None:
    size = metadata_size(meta)
    assert check_metadata(meta, size) == meta
    if size > 0:
        with pytest.raises(MetadataTooLargeError) as info:
            check_metadata(meta, size - 1)
        assert info.value.details == {"size": size, "limit": size - 1}


def test_metadata_counts_utf8_bytes() -> None:
    assert metadata_size({"k": "é"}) == len('{"k":"é"}'.encode())
    with pytest.raises(InvalidInputError):
        check_metadata(["not", "a", "mapping"], 100)  # type: ignore[arg-type]


@given(st.ip_addresses(), st.integers(min_value=0, max_value=128))
def test_ban_targets_normalise_to_networks(address: object, prefix: int) -> None:
    net = ipaddress.ip_network(f"{address}/{prefix % (address.max_prefixlen + 1)}", strict=False)  # type: ignore[attr-defined]
    target, kind = check_ban_target(f"{address}/{net.prefixlen}")
    assert kind == "cidr"
    assert target == net.with_prefixlen
    assert check_ban_target(target) == (target, "cidr")  # idempotent


def test_ban_target_peer_id() -> None:
    pid = Identity.generate().peer_id.to_string()
    assert check_ban_target(pid) == (pid, "peer")
    with pytest.raises(InvalidBanTargetError):
        check_ban_target(None)  # type: ignore[arg-type]


def test_audit_detail_is_a_json_clean_copy() -> None:
    detail = {"a": [1, 2], "b": {"c": None}}
    out = check_audit_detail(detail)
    assert out == detail
    out["a"].append(3)
    assert detail["a"] == [1, 2]
    with pytest.raises(InvalidInputError):
        check_audit_detail({"x": float("inf")})


async def test_memory_records_are_copies() -> None:
    repo = MemoryRepository()
    pid = Identity.generate().peer_id
    rec = await repo.add_peer(pid, [], metadata={"a": "1"})
    rec.metadata["a"] = "changed"  # type: ignore[index]
    again = await repo.get_peer(pid)
    assert again is not None
    assert again.metadata == {"a": "1"}


async def test_memory_audit_is_bounded() -> None:
    repo = MemoryRepository(max_audit_entries=3)
    for i in range(5):
        await repo.audit("k", detail={"i": i})
    entries = await repo.list_audit()
    assert [e.detail["i"] for e in entries] == [2, 3, 4]
    assert [e.id for e in entries] == [3, 4, 5]


def test_engine_repository_does_not_import_sqlalchemy() -> None:
    import subprocess
    import sys

    code = (
        "import sys, engine.repository, engine.peer_validation; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'models')]; "
        "sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
