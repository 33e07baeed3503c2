"""Load tests are opt-in: they run only when selected with ``-m load``.

``.venv/bin/pytest tests/load -m load`` runs them (1,000 peer nodes in subprocesses,
about a minute on the 2-core machine); without ``-m load`` every ``load``-marked test here
is skipped with the reason below.
"""

from __future__ import annotations

import re

import pytest

SKIP_REASON = "load test (1,000 peers, ~1 min): opt-in, run with `pytest tests/load -m load`"


def _load_selected(markexpr: str) -> bool:
    """Whether ``-m`` names ``load`` (and not as ``not load``)."""
    words = re.findall(r"[\w-]+", markexpr)
    return any(w == "load" and (i == 0 or words[i - 1] != "not") for i, w in enumerate(words))


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip ``load``-marked tests unless ``-m load`` selected them."""
    if item.get_closest_marker("load") and not _load_selected(item.config.option.markexpr):
        pytest.skip(SKIP_REASON)
