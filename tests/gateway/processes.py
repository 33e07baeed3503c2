"""Real ``glueberry serve`` processes for the end-to-end tests (and the benchmark).

A :class:`GatewayProcess` runs ``python -m api.cli serve --http-port 0 --p2p-port 0`` with
its own data directory (identity key + SQLite database) and waits for the ``ready`` line
on stdout with a deadline: no sleeps. stdout lines are read by a thread into a queue;
stderr goes to a log file shown when something fails.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_FACTOR = float(os.environ.get("GLUEBERRY_TEST_TIMEOUT_FACTOR", "1"))
START_TIMEOUT = 30.0 * TIMEOUT_FACTOR


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for a CLI call: this data dir, nothing inherited from GLUEBERRY_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLUEBERRY_")}
    env.update(
        {
            "GLUEBERRY_DATA_DIR": str(data_dir),
            "GLUEBERRY_HTTP_HOST": "127.0.0.1",
            "GLUEBERRY_P2P_HOST": "127.0.0.1",
            "GLUEBERRY_LOG_LEVEL": "warning",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def run_cli(data_dir: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``glueberry <args>`` to completion (raises on a non-zero exit)."""
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=data_dir,
        env=cli_env(data_dir, **extra),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        check=True,
    )


def create_key(data_dir: Path, *scopes: str, **extra: str) -> str:
    """``glueberry apikey create --scope ...``: the key printed alone on the last line."""
    args = ["apikey", "create", "--name", "e2e"]
    for scope in scopes:
        args += ["--scope", scope]
    out = run_cli(data_dir, *args, **extra).stdout
    return out.strip().splitlines()[-1]


class GatewayProcess:
    """One ``glueberry serve`` process.

    Args:
        data_dir: its data directory (created if missing).
        extra_env: more ``GLUEBERRY_*`` settings.
    """

    def __init__(self, data_dir: Path, **extra_env: str) -> None:
        self.data_dir = data_dir
        self.extra_env = extra_env
        self.proc: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.info: dict[str, Any] = {}
        self.log_path = data_dir / "serve.log"
        self._reader: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, http_port: int = 0, p2p_port: int = 0) -> GatewayProcess:
        """Start and wait for the ``ready`` line (deadline ``START_TIMEOUT``)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.lines = queue.Queue()
        log = self.log_path.open("a")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "api.cli",
                "serve",
                "--http-port",
                str(http_port),
                "--p2p-port",
                str(p2p_port),
            ],
            cwd=self.data_dir,
            env=cli_env(self.data_dir, **self.extra_env),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        log.close()
        self._reader = threading.Thread(target=self._pump, args=(self.proc,), daemon=True)
        self._reader.start()
        info: dict[str, Any] = {"p2p_addrs": []}
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                raise TimeoutError(f"gateway not ready in {START_TIMEOUT}s:\n{self.log()}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"gateway exited before ready:\n{self.log()}")
            name, _, value = line.partition("=")
            if line == "ready":
                break
            if name == "p2p_addr":
                info["p2p_addrs"].append(value)
            elif name in ("http_url", "peer_id"):
                info[name] = value
        self.info = info
        return self

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def stop(self) -> int:
        """SIGTERM, wait for a clean exit (kill after the deadline); return the exit code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=START_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    raise
        finally:
            if self._reader is not None:
                self._reader.join(timeout=START_TIMEOUT)  # ends at EOF of stdout
            if proc.stdout is not None:
                proc.stdout.close()
        return proc.returncode

    def log(self) -> str:
        """The server's stderr so far."""
        return self.log_path.read_text() if self.log_path.exists() else ""

    # -- facts printed on start ---------------------------------------------------------

    @property
    def url(self) -> str:
        return str(self.info["http_url"])

    @property
    def peer_id(self) -> str:
        return str(self.info["peer_id"])

    @property
    def p2p_addr(self) -> str:
        """The first p2p multiaddr without the /p2p/ suffix."""
        return str(self.info["p2p_addrs"][0]).rsplit("/p2p/", 1)[0]

    def client(self, key: str | None = None, timeout: float = 30.0) -> httpx.Client:
        """An httpx client for this gateway (bearer ``key`` if given)."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout * TIMEOUT_FACTOR)
