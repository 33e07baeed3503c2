"""The README's gateway tour runs verbatim against two real nodes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .processes import ROOT, TIMEOUT_FACTOR, GatewayProcess, create_key

pytestmark = pytest.mark.slow


def _tour_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Gateway tour", 1)[1]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    tours = [b for b in blocks if "curl" in b]
    assert len(tours) == 1
    return tours[0]


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq")
def test_readme_curl_examples_run_verbatim(tmp_path: Path) -> None:
    script = _tour_block()
    procs = []
    env = dict(os.environ)
    try:
        for name in ("A", "B"):
            data_dir = tmp_path / name
            data_dir.mkdir()
            key = create_key(data_dir, "admin")
            procs.append(GatewayProcess(data_dir).start())
            env[name] = procs[-1].url
            env[f"KEY_{name}"] = key
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            env=env,
            capture_output=True,
            text=True,
            timeout=60 * TIMEOUT_FACTOR,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout
        assert '"status":"ok"' in out
        assert '"ready":true' in out
        assert '"state":"established"' in out
        assert '"text":"hello from A"' in out
        assert '"target":"203.0.113.0/24"' in out
        assert "glueberry_connected_peers 1.0" in out
    finally:
        for proc in procs:
            proc.stop()
