"""Test-suite wide settings.

- ``MS``: one millisecond, scaled by ``GLUEBERRY_TEST_TIMEOUT_FACTOR`` (default 1). Every
  timeout a test waits with is a multiple of it, so a slow machine raises the factor
  instead of editing tests (the websockets test suite does the same). Use the ``ms``
  fixture, or ``from conftest import MS``.
- Hypothesis: no per-example deadline (the machine is shared; timing is not what the
  property tests check). ``HYPOTHESIS_PROFILE=thorough`` runs more examples.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

TIMEOUT_FACTOR = float(os.environ.get("GLUEBERRY_TEST_TIMEOUT_FACTOR", "1"))
MS = 0.001 * TIMEOUT_FACTOR

settings.register_profile("default", deadline=None)
settings.register_profile("thorough", deadline=None, max_examples=2_000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def ms() -> float:
    """One millisecond of test time (scaled by GLUEBERRY_TEST_TIMEOUT_FACTOR)."""
    return MS
