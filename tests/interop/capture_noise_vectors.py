"""Capture libp2p Noise handshake-payload vectors from real js-libp2p / py-libp2p peers.

Run by hand (not in CI), from the repository root::

    .venv/bin/python tests/interop/capture_noise_vectors.py [--out PATH]

For each implementation (js-libp2p via ``tests/interop/js_peer.mjs``, py-libp2p via
``tests/interop/py_peer.py``) and each role (we initiate: we dial its listen address; they
initiate: it dials a TCP listener of ours), this runs multistream-select (``/noise``) and our
sans-IO :class:`~engine.net.noise.NoiseHandshake` over a plain TCP connection, then closes
the connection (no muxer: the remote's dial fails after the handshake, which is expected).
Per run it records the remote's static X25519 key, the decrypted ``NoiseHandshakePayload``
it sent (and that our handshake verified), its parsed fields, the peer id the remote
announced on its control channel, and our own side. Our side uses a fixed identity seed and
static key (derived from constant labels below, test-only), so our payload is reproducible.

The output (default ``tests/vectors/noise_payload_interop.json``) is checked by
``tests/unit/test_noise_payload_vectors.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import hashlib
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO_ROOT / "tests"), str(REPO_ROOT)]

from helpers.glueberry_peer import split_p2p_addr  # noqa: E402
from helpers.peer_process import (  # noqa: E402
    INTEROP_DIR,
    PeerCommandError,
    PeerProcess,
    js_peer_argv,
    py_peer_argv,
)

from engine.crypto.identity import Identity, PeerId  # noqa: E402
from engine.net.multistream import dial_select, listen_select  # noqa: E402
from engine.net.noise import NOISE_PROTOCOL_ID, NoiseHandshake, NoiseStaticKey  # noqa: E402
from engine.net.protobuf import MAX_NOISE_PAYLOAD_SIZE, iter_fields  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "tests" / "vectors" / "noise_payload_interop.json"
# Test-only key material for our side (public in this file on purpose).
LOCAL_SEED = hashlib.sha256(b"glueberry/noise-payload-interop/identity-seed").digest()
LOCAL_STATIC = hashlib.sha256(b"glueberry/noise-payload-interop/static-key").digest()
TIMEOUT = 15.0
JS_PACKAGES = ("libp2p", "@chainsafe/libp2p-noise", "@libp2p/crypto", "@libp2p/peer-id")
PY_PACKAGES = ("libp2p", "noiseprotocol", "cryptography")


def js_versions() -> dict[str, str]:
    """Versions of the js packages that matter, from the committed package-lock."""
    lock = json.loads((INTEROP_DIR / "package-lock.json").read_text())
    out = {name: lock["packages"][f"node_modules/{name}"]["version"] for name in JS_PACKAGES}
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    out["node"] = node.stdout.strip()
    return out


def py_versions() -> dict[str, str]:
    """Versions of the py-libp2p distribution and its Noise dependencies (this venv)."""
    out = {name: importlib.metadata.version(name) for name in PY_PACKAGES}
    out["python"] = sys.version.split()[0]
    return out


async def _handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    static: NoiseStaticKey,
    *,
    initiator: bool,
    expected: PeerId | None,
) -> NoiseHandshake:
    async def read() -> bytes:
        return await reader.read(65536)

    async def write(data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    if initiator:
        _, left = await dial_select(read, write, [NOISE_PROTOCOL_ID])
    else:
        _, left = await listen_select(read, write, {NOISE_PROTOCOL_ID})
    hs = NoiseHandshake(static, initiator=initiator, expected_peer=expected)
    data = left
    while True:
        if data:
            hs.receive_data(data)
        out = hs.data_to_send()
        if out:
            await write(out)
        if hs.done:
            return hs
        data = await read()
        if not data:
            raise ConnectionError("the peer closed the connection during the handshake")


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def we_initiate(peer: PeerProcess, static: NoiseStaticKey) -> NoiseHandshake:
    """Dial the peer's listen address and run the handshake as initiator."""
    peer_id, _ = split_p2p_addr(peer.addrs[0])
    parts = peer.addrs[0].split("/")  # /ip4/127.0.0.1/tcp/PORT/p2p/ID
    reader, writer = await asyncio.open_connection(parts[2], int(parts[4]))
    try:
        async with asyncio.timeout(TIMEOUT):
            return await _handshake(reader, writer, static, initiator=True, expected=peer_id)
    finally:
        await _close(writer)


async def they_initiate(peer: PeerProcess, static: NoiseStaticKey, local: PeerId) -> NoiseHandshake:
    """Have the peer dial a TCP listener of ours; run the handshake as responder."""
    done: asyncio.Future[NoiseHandshake] = asyncio.get_running_loop().create_future()

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            hs = await _handshake(reader, writer, static, initiator=False, expected=None)
        except Exception as exc:
            if not done.done():
                done.set_exception(exc)
        else:
            if not done.done():
                done.set_result(hs)
        finally:
            await _close(writer)

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        addr = f"/ip4/127.0.0.1/tcp/{port}/p2p/{local}"
        dial = asyncio.create_task(peer.command("dial", addr=addr, timeout=TIMEOUT))
        try:
            async with asyncio.timeout(TIMEOUT):
                return await done
        finally:
            # The dial must fail (we offer no muxer); only its outcome is awaited here.
            with contextlib.suppress(PeerCommandError, TimeoutError):
                await dial
    finally:
        server.close()
        await server.wait_closed()


def vector(
    impl: str, role: str, hs: NoiseHandshake, announced: str, local: PeerId
) -> dict[str, Any]:
    """One JSON vector from a finished handshake."""
    assert hs.remote_static_key is not None
    assert hs.remote_payload is not None
    payload = hs.remote_payload
    fields = list(iter_fields(payload, max_size=MAX_NOISE_PAYLOAD_SIZE))
    by_number: dict[int, bytes] = {}
    for number, _, value in fields:
        assert isinstance(value, bytes)
        by_number[number] = value
    extensions = by_number.get(4)
    return {
        "name": f"{impl}/{role}",
        "implementation": impl,
        "role": role,
        "remote_static_key": hs.remote_static_key.hex(),
        "payload": payload.hex(),
        "payload_field_order": [number for number, _, _ in fields],
        "identity_key": by_number[1].hex(),
        "identity_sig": by_number[2].hex(),
        "extensions": None if extensions is None else extensions.hex(),
        "remote_peer_id": announced,
        "verified_peer_id": str(hs.remote_peer),
        "local_peer_id": str(local),
    }


async def capture(out: Path) -> dict[str, Any]:
    """Run every capture and write the JSON file."""
    identity = Identity.from_seed(LOCAL_SEED)
    static = NoiseStaticKey(identity, X25519PrivateKey.from_private_bytes(LOCAL_STATIC))
    local = identity.peer_id
    runs = [("js-libp2p", js_peer_argv(), js_versions()), ("py-libp2p", py_peer_argv(), None)]
    implementations: dict[str, Any] = {}
    vectors: list[dict[str, Any]] = []
    for impl, argv, versions in runs:
        for role in ("we_initiate", "they_initiate"):
            # A fresh peer process (fresh identity and static key) per run.
            async with await PeerProcess.start(argv, name=impl) as peer:
                if role == "we_initiate":
                    hs = await we_initiate(peer, static)
                else:
                    hs = await they_initiate(peer, static, local)
                vectors.append(vector(impl, role, hs, peer.peer_id, local))
                implementations[impl] = {
                    "versions": versions if versions is not None else py_versions(),
                    "agent_version": peer.ready.get("agent_version"),
                    "peer": str(argv[-1]).removeprefix(str(REPO_ROOT) + "/"),
                }
    doc = {
        "description": (
            "libp2p Noise handshake payloads (NoiseHandshakePayload) captured from real "
            "handshakes between our sans-IO NoiseHandshake (engine/net/noise.py) over TCP "
            "(multistream-select /noise, then Noise_XX_25519_ChaChaPoly_SHA256) and the "
            "js-libp2p / py-libp2p peers of tests/interop, in both roles; made by "
            "tests/interop/capture_noise_vectors.py. Every peer run has a fresh identity. "
            "Hex strings. payload = the remote's decrypted payload bytes; identity_sig signs "
            "'noise-libp2p-static-key:' || remote_static_key with the Ed25519 key in "
            "identity_key (a libp2p PublicKey protobuf); remote_peer_id = the id the remote "
            "announced on its control channel. Our side uses the fixed test-only key "
            "material in 'local' (never use it elsewhere)."
        ),
        "generated_by": "tests/interop/capture_noise_vectors.py",
        "captured_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "signature_prefix": "noise-libp2p-static-key:",
        "implementations": implementations,
        "local": {
            "identity_seed": LOCAL_SEED.hex(),
            "static_private_key": LOCAL_STATIC.hex(),
            "static_public_key": static.public_key.hex(),
            "peer_id": str(local),
            "payload": static.payload.hex(),
        },
        "vectors": vectors,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    doc = asyncio.run(capture(args.out))
    for v in doc["vectors"]:
        ext = v["extensions"]
        print(
            f"{v['name']:<26} fields={v['payload_field_order']} payload={len(v['payload']) // 2} B "
            f"extensions={'none' if ext is None else ext} peer={v['remote_peer_id']}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
