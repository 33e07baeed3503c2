"""Security tests: node helpers come from ``tests/integration/node_kit.py``."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent / "integration"))
