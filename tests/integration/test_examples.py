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
