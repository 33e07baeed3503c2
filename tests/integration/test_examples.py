"""The examples in examples/ run as documented and do what they print."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_two_nodes_example_exchanges_messages() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "two_nodes.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "state: established"
    received = [re.match(r"bob got '(.*)' from (12D3KooW\w+)$", line) for line in lines[1:]]
    assert all(received), lines
    assert [m.group(1) for m in received if m] == ["hello #0", "hello #1", "hello #2"]
    assert len({m.group(2) for m in received if m}) == 1


def test_readme_shows_the_example() -> None:
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / "examples" / "two_nodes.py").read_text()
    body = example[example.index("async def main") : example.index("\n\nif __name__")]
    assert body in readme


PEER_ID = r"12D3KooW\w+"


def run_example(name: str) -> list[str]:
    """Run one example as documented and return its output lines."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_app_handshake_example_finalizes_good_token_and_refuses_bad_one() -> None:
    lines = run_example("app_handshake.py")
    ids = [re.fullmatch(rf"(alice|bob|mallory) is ({PEER_ID})", line) for line in lines[:3]]
    assert all(ids), lines[:3]
    assert [m.group(1) for m in ids if m] == ["alice", "bob", "mallory"]
    assert len({m.group(2) for m in ids if m}) == 3
    assert lines[3:] == [
        "alice: sent hello to bob",
        "alice: got hello from bob",
        "alice: prepared ['chat'] for bob",
        "alice: finalized bob: established",
        "alice: sent ready to bob",
        "bob: got hello from alice",
        "bob: prepared ['chat'] for alice",
        "bob: sent hello to alice",
        "bob: got ready from alice",
        "bob: finalized alice: established",
        "bob got 'hi Bob' from alice",
        "bob got 'the token checked out' from alice",
        "bob: got hello from mallory",
        "bob: refusing mallory: bad token",
        "bob: mallory blacklisted: True",
        "bob: mallory state: disconnected",
        "bob: established peers: ['alice']",
    ]


def test_events_and_stats_example_prints_transitions_and_counters() -> None:
    lines = run_example("events_and_stats.py")
    assert re.fullmatch(rf"bob is {PEER_ID}", lines[0]), lines[0]
    assert lines[1:] == [
        "stream chat: messages out=3 in=2, bytes out=17 in=9",
        "stream files: messages out=1 in=0, bytes out=1000 in=0",
        "total: messages out=4 in=2, bytes out=1017 in=9",
        "event: disconnected -> connecting",
        "event: connecting -> connected",
        "event: connected -> established",
        "event: established -> disconnected",
    ]


def test_examples_readme_describes_every_example() -> None:
    readme = (ROOT / "examples" / "README.md").read_text()
    for example in sorted((ROOT / "examples").glob("*.py")):
        assert f".venv/bin/python examples/{example.name}" in readme, example.name
