"""The Repository contract, run against MemoryRepository, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from engine.crypto import Identity, PeerId
from engine.crypto.identity import encode_public_key_proto
from engine.errors import (
    BanNotFoundError,
    InvalidBanTargetError,
    InvalidInputError,
    InvalidMultiaddrError,
    InvalidPeerIdError,
    InvalidPublicKeyError,
    MetadataTooLargeError,
    PeerExistsError,
    PeerNotFoundError,
)
from engine.repository import Repository

from .conftest import FakeClock

A1 = "/ip4/10.0.0.1/tcp/4001"
A2 = "/ip6/::1/tcp/4002"
A3 = "/dns4/example.com/tcp/443/wss"


def new_peer() -> PeerId:
    return Identity.generate().peer_id


async def assert_empty(repo: Repository) -> None:
    page, total = await repo.list_peers()
    assert (page, total) == ([], 0)


# -- peers ---------------------------------------------------------------------------------


async def test_add_and_get_roundtrip(repo: Repository, clock: FakeClock) -> None:
    pid = new_peer()
    added = await repo.add_peer(
        pid, [A1, A2, A1], public_key=pid.public_key, metadata={"role": "relay", "é": "ü"}
    )
    assert added.peer_id == pid
    assert added.addrs == (A1, A2)  # duplicates dropped, order kept
    assert added.public_key == pid.public_key
    assert added.metadata == {"role": "relay", "é": "ü"}
    assert (added.first_seen, added.last_seen, added.connect_count) == (None, None, 0)
    assert added.created_at == added.updated_at == clock.now
    assert await repo.get_peer(pid) == added
    assert await repo.get_peer(pid.to_string()) == added


async def test_get_unknown_peer_is_none(repo: Repository) -> None:
    assert await repo.get_peer(new_peer()) is None


async def test_public_key_proto_form_is_normalised(repo: Repository) -> None:
    pid = new_peer()
    rec = await repo.add_peer(pid, [A1], public_key=encode_public_key_proto(pid.public_key))
    assert rec.public_key == pid.public_key


async def test_multiaddr_with_own_p2p_suffix_is_kept(repo: Repository) -> None:
    pid = new_peer()
    addr = f"{A1}/p2p/{pid}"
    assert (await repo.add_peer(pid, [addr])).addrs == (addr,)


async def test_duplicate_peer_is_refused_and_original_kept(repo: Repository) -> None:
    pid = new_peer()
    first = await repo.add_peer(pid, [A1], metadata={"a": "1"})
    with pytest.raises(PeerExistsError):
        await repo.add_peer(pid, [A2], metadata={"b": "2"})
    assert await repo.get_peer(pid) == first


async def test_concurrent_duplicate_adds_exactly_one_wins(repo: Repository) -> None:
    pid = new_peer()
    results = await asyncio.gather(
        *(repo.add_peer(pid, [A1]) for _ in range(5)), return_exceptions=True
    )
    assert sum(1 for r in results if not isinstance(r, BaseException)) == 1
    assert all(isinstance(r, PeerExistsError) for r in results if isinstance(r, BaseException))


async def test_concurrent_adds_of_distinct_peers(repo: Repository) -> None:
    peers = [new_peer() for _ in range(20)]
    await asyncio.gather(*(repo.add_peer(p, [A1]) for p in peers))
    _, total = await repo.list_peers()
    assert total == 20


@pytest.mark.parametrize(
    ("peer_id", "addrs", "kwargs", "error"),
    [
        ("not-a-peer-id", [A1], {}, InvalidPeerIdError),
        ("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", [A1], {}, InvalidPeerIdError),
        (None, ["/ip4/1.2.3.4/tcp/99999"], {}, InvalidMultiaddrError),
        (None, ["garbage"], {}, InvalidMultiaddrError),
        (None, [""], {}, InvalidMultiaddrError),
        (None, [A1, "/ip4/1.2.3.4/tcp"], {}, InvalidMultiaddrError),
        (None, "/ip4/1.2.3.4/tcp/1", {}, InvalidMultiaddrError),
        (None, [A1], {"metadata": {"k": "v" * 300}}, MetadataTooLargeError),
        (None, [A1], {"metadata": {"k": 1}}, InvalidInputError),
        (None, [A1], {"public_key": b"\x01" * 32}, InvalidPublicKeyError),
        (None, [A1], {"public_key": b"short"}, InvalidPublicKeyError),
    ],
)
async def test_bad_input_is_typed_and_writes_nothing(
    repo: Repository, peer_id: str | None, addrs: object, kwargs: dict[str, object], error: type
) -> None:
    target = peer_id if peer_id is not None else new_peer()
    with pytest.raises(error) as info:
        await repo.add_peer(target, addrs, **kwargs)  # type: ignore[arg-type]
    assert info.value.message  # a clear message, not the class doc fallback only
    with pytest.raises(error):
        await repo.upsert_peer(target, addrs, **kwargs)  # type: ignore[arg-type]
    await assert_empty(repo)


async def test_other_peers_p2p_suffix_is_refused(repo: Repository) -> None:
    pid, other = new_peer(), new_peer()
    with pytest.raises(InvalidMultiaddrError, match="another peer"):
        await repo.add_peer(pid, [f"{A1}/p2p/{other}"])
    await assert_empty(repo)


async def test_too_many_addrs_refused(repo: Repository) -> None:
    addrs = [f"/ip4/10.0.0.1/tcp/{port}" for port in range(1000, 1065)]
    with pytest.raises(InvalidMultiaddrError, match="at most 64"):
        await repo.add_peer(new_peer(), addrs)
    await assert_empty(repo)


async def test_failed_update_leaves_peer_unchanged(repo: Repository) -> None:
    pid = new_peer()
    before = await repo.add_peer(pid, [A1], metadata={"a": "1"})
    with pytest.raises(InvalidMultiaddrError):
        await repo.update_peer(pid, addrs=[A2, "nope"], metadata={"b": "2"})
    with pytest.raises(MetadataTooLargeError):
        await repo.update_peer(pid, addrs=[A2], metadata={"b": "x" * 1000})
    assert await repo.get_peer(pid) == before


async def test_update_peer_changes_given_fields_only(repo: Repository, clock: FakeClock) -> None:
    pid = new_peer()
    before = await repo.add_peer(pid, [A1], metadata={"a": "1"})
    clock.advance(10)
    after = await repo.update_peer(pid, metadata={"b": "2"})
    assert after.addrs == (A1,)
    assert after.metadata == {"b": "2"}
    assert after.created_at == before.created_at
    assert after.updated_at == before.updated_at + 10
    after2 = await repo.update_peer(pid, addrs=[A3, A2], public_key=pid.public_key)
    assert after2.addrs == (A3, A2)
    assert after2.metadata == {"b": "2"}
    assert after2.public_key == pid.public_key
    assert await repo.get_peer(pid) == after2


async def test_update_unknown_peer(repo: Repository) -> None:
    with pytest.raises(PeerNotFoundError):
        await repo.update_peer(new_peer(), metadata={})
    await assert_empty(repo)


async def test_upsert_creates_then_replaces(repo: Repository, clock: FakeClock) -> None:
    pid = new_peer()
    created = await repo.upsert_peer(pid, [A1], metadata={"a": "1"})
    clock.advance(5)
    replaced = await repo.upsert_peer(pid, [A2])
    assert replaced.addrs == (A2,)
    assert replaced.metadata == {"a": "1"}  # None keeps the old metadata
    assert replaced.created_at == created.created_at
    assert replaced.updated_at == created.created_at + 5
    assert await repo.get_peer(pid) == replaced
    _, total = await repo.list_peers()
    assert total == 1


async def test_remove_peer(repo: Repository) -> None:
    pid = new_peer()
    await repo.add_peer(pid, [A1, A2])
    await repo.remove_peer(pid)
    assert await repo.get_peer(pid) is None
    with pytest.raises(PeerNotFoundError):
        await repo.remove_peer(pid)
    readded = await repo.add_peer(pid, [A3])  # no stale addresses left behind
    assert readded.addrs == (A3,)
    assert (await repo.get_peer(pid)) == readded


async def test_list_peers_pages_in_creation_order(repo: Repository, clock: FakeClock) -> None:
    peers = []
    for _ in range(7):
        clock.advance(1)
        peers.append(new_peer())
        await repo.add_peer(peers[-1], [A1])
    page, total = await repo.list_peers(offset=2, limit=3)
    assert total == 7
    assert [r.peer_id for r in page] == peers[2:5]
    page, total = await repo.list_peers(offset=6, limit=100)
    assert [r.peer_id for r in page] == peers[6:]
    assert (await repo.list_peers(offset=50))[0] == []


@pytest.mark.parametrize(("offset", "limit"), [(-1, 10), (0, 0), (0, 1001), (0, True)])
async def test_list_peers_rejects_bad_page(repo: Repository, offset: int, limit: int) -> None:
    with pytest.raises(InvalidInputError):
        await repo.list_peers(offset=offset, limit=limit)


# -- hot data ------------------------------------------------------------------------------


async def test_touch_then_flush(repo: Repository) -> None:
    pid = new_peer()
    await repo.add_peer(pid, [A1])
    repo.touch_peer(pid, seen_at=1000.0, connected=True)
    repo.touch_peer(pid, seen_at=1005.0)
    repo.touch_peer(pid, seen_at=1002.0, connected=True)  # older: last_seen stays 1005
    pending = await repo.get_peer(pid)  # reads merge unflushed hot data
    assert pending is not None
    assert (pending.first_seen, pending.last_seen, pending.connect_count) == (1000, 1005, 2)
    await repo.flush()
    flushed = await repo.get_peer(pid)
    assert flushed == pending
    repo.touch_peer(pid, seen_at=999.0, connected=True)
    await repo.flush()
    again = await repo.get_peer(pid)
    assert again is not None
    assert (again.first_seen, again.last_seen, again.connect_count) == (999, 1005, 3)
    page, _ = await repo.list_peers()
    assert page == [again]


async def test_touch_unknown_peer_is_ignored(repo: Repository) -> None:
    repo.touch_peer(new_peer(), seen_at=1.0, connected=True)
    await repo.flush()
    await assert_empty(repo)


async def test_touch_survives_critical_update(repo: Repository) -> None:
    pid = new_peer()
    await repo.add_peer(pid, [A1])
    repo.touch_peer(pid, seen_at=50.0, connected=True)
    updated = await repo.update_peer(pid, addrs=[A2])
    assert (updated.last_seen, updated.connect_count) == (50.0, 1)
    await repo.flush()
    final = await repo.get_peer(pid)
    assert final is not None
    assert (final.addrs, final.last_seen, final.connect_count) == ((A2,), 50.0, 1)


# -- bans ----------------------------------------------------------------------------------


async def test_bans_roundtrip_and_normalisation(repo: Repository, clock: FakeClock) -> None:
    pid = new_peer()
    ban_peer = await repo.add_ban(pid.to_string(), reason="spam")
    clock.advance(1)
    ban_net = await repo.add_ban("10.1.2.3/8", reason="abuse", expires_at=clock.now + 100)
    clock.advance(1)
    ban_ip = await repo.add_ban("2001:db8::1")
    assert (ban_peer.target, ban_peer.kind, ban_peer.reason) == (str(pid), "peer", "spam")
    assert (ban_net.target, ban_net.kind) == ("10.0.0.0/8", "cidr")
    assert ban_ip.target == "2001:db8::1/128"
    assert await repo.list_bans() == [ban_peer, ban_net, ban_ip]


async def test_ban_replace_keeps_created_at(repo: Repository, clock: FakeClock) -> None:
    first = await repo.add_ban("192.168.0.0/16", reason="a")
    clock.advance(3)
    second = await repo.add_ban("192.168.7.7/16", reason="b", expires_at=clock.now + 60)
    assert second.created_at == first.created_at
    assert (second.reason, second.expires_at) == ("b", clock.now + 60)
    assert await repo.list_bans() == [second]


async def test_expired_bans_hidden_unless_asked(repo: Repository, clock: FakeClock) -> None:
    ban = await repo.add_ban("1.2.3.4", expires_at=clock.now + 10)
    assert await repo.list_bans() == [ban]
    clock.advance(11)
    assert await repo.list_bans() == []
    assert await repo.list_bans(include_expired=True) == [ban]


async def test_remove_ban(repo: Repository) -> None:
    await repo.add_ban("10.0.0.0/24")
    await repo.remove_ban("10.0.0.7/24")  # the same network, normalised
    assert await repo.list_bans() == []
    with pytest.raises(BanNotFoundError):
        await repo.remove_ban("10.0.0.0/24")


@pytest.mark.parametrize("target", ["", "banana", "10.0.0.0/33", "x" * 200])
async def test_bad_ban_target(repo: Repository, target: str) -> None:
    with pytest.raises(InvalidBanTargetError):
        await repo.add_ban(target)
    assert await repo.list_bans(include_expired=True) == []


@pytest.mark.parametrize(
    "kwargs", [{"reason": "r" * 2000}, {"expires_at": -1.0}, {"expires_at": float("nan")}]
)
async def test_bad_ban_fields(repo: Repository, kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        await repo.add_ban("10.0.0.1", **kwargs)  # type: ignore[arg-type]
    assert await repo.list_bans(include_expired=True) == []


# -- audit ---------------------------------------------------------------------------------


async def test_audit_log(repo: Repository, clock: FakeClock) -> None:
    pid = str(new_peer())
    await repo.audit("connect_attempt", peer_id=pid, detail={"addr": A1})
    clock.advance(1)
    await repo.audit("handshake_failed", peer_id=pid, detail={"reason": "timeout", "n": 2})
    await repo.audit("ban_added", detail=None)
    entries = await repo.list_audit()
    assert [e.kind for e in entries] == ["connect_attempt", "handshake_failed", "ban_added"]
    assert entries[0].peer_id == pid
    assert entries[2].peer_id is None
    assert entries[1].detail == {"reason": "timeout", "n": 2}
    assert entries[1].at == entries[0].at + 1
    assert entries[0].id < entries[1].id < entries[2].id
    assert await repo.list_audit(since_id=entries[0].id, limit=1) == [entries[1]]
    assert await repo.list_audit(since_id=entries[2].id) == []


async def test_prune_audit(repo: Repository, clock: FakeClock) -> None:
    await repo.audit("old")
    clock.advance(100)
    await repo.audit("new")
    assert await repo.prune_audit(before=clock.now - 50) == 1
    assert [e.kind for e in await repo.list_audit()] == ["new"]
    assert await repo.prune_audit(before=clock.now - 50) == 0


@pytest.mark.parametrize(
    ("kind", "detail"),
    [("", None), ("k" * 65, None), ("x", {"v": object()}), ("x", {"v": "y" * 20_000})],
)
async def test_bad_audit_input(repo: Repository, kind: str, detail: object) -> None:
    with pytest.raises(InvalidInputError):
        await repo.audit(kind, detail=detail)  # type: ignore[arg-type]
    assert await repo.list_audit() == []


# -- lifecycle -----------------------------------------------------------------------------


async def test_start_close_idempotent_and_leave_no_task(repo: Repository) -> None:
    before = {t for t in asyncio.all_tasks() if not t.done()}
    await repo.start()
    await repo.start()
    await repo.close()
    await repo.close()
    after = {t for t in asyncio.all_tasks() if not t.done()}
    assert after <= before
