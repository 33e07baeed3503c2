"""Benchmark of the per-message hot path: Cipher and the v1 frame codec.

Run: ``.venv/bin/python tests/bench/bench_crypto_framing.py [--size 1024] [--count 200000]``

Prints a table and one JSON line (``{"bench": "crypto_framing", ...}``). Single-threaded;
numbers are per core. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable

from engine.crypto.cipher import Cipher
from engine.framing import FrameDecoder, encode_frame, encode_frames


def _rate(fn: Callable[[], object], count: int) -> float:
    """Operations per second of ``fn`` called ``count`` times (best of 3 runs)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(count):
            fn()
        best = min(best, time.perf_counter() - start)
    return count / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1024, help="plaintext size in bytes")
    parser.add_argument("--count", type=int, default=200_000, help="messages per run")
    parser.add_argument("--chunk", type=int, default=64 * 1024, help="decoder feed size")
    args = parser.parse_args()

    size, count, chunk = args.size, args.count, args.chunk
    plaintext = os.urandom(size)
    cipher = Cipher(os.urandom(32))
    sealed = cipher.encrypt(plaintext)

    results: dict[str, float] = {}
    results["encrypt_per_s"] = _rate(lambda: cipher.encrypt(plaintext), count)
    results["decrypt_per_s"] = _rate(lambda: cipher.decrypt(sealed), count)

    def round_trip() -> None:
        cipher.decrypt(cipher.encrypt(plaintext))

    results["encrypt_decrypt_per_s"] = _rate(round_trip, count)
    results["encode_frame_per_s"] = _rate(lambda: encode_frame(sealed), count)

    # Decoder: a stream of ``count`` frames of the sealed payload, fed in ``chunk`` slices.
    stream = encode_frames([sealed] * count)
    chunks = [stream[i : i + chunk] for i in range(0, len(stream), chunk)]

    def decode_all() -> None:
        decoder = FrameDecoder(max_message_size=1024 * 1024)
        got = 0
        for piece in chunks:
            got += len(decoder.feed(piece))
        assert got == count

    results["decode_frames_per_s"] = _rate(decode_all, 1) * count
    results["decode_mb_per_s"] = results["decode_frames_per_s"] * len(sealed) / 1e6
    results["encrypt_decrypt_us"] = 1e6 / results["encrypt_decrypt_per_s"]

    print(f"payload {size} B plaintext ({len(sealed)} B sealed), {count} messages, chunk {chunk}")
    print(f"{'operation':<24}{'rate':>16}")
    for key, value in results.items():
        print(f"{key:<24}{value:>16,.1f}")
    print(
        json.dumps(
            {
                "bench": "crypto_framing",
                "size": size,
                "count": count,
                "chunk": chunk,
                **{k: round(v, 2) for k, v in results.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
