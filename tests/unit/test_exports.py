"""Every package's ``__all__`` exists and names attributes that exist (websockets' guard).

Packages are found on disk, so a new package is covered the day it is created. Engine
modules that declare ``__all__`` are checked too: the engine is a library whose imports
must be side-effect free, so importing every module is safe.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOP_LEVEL = ("engine", "api", "models")


def _packages() -> list[str]:
    found = []
    for top in TOP_LEVEL:
        for init in sorted((ROOT / top).rglob("__init__.py")):
            relative = init.parent.relative_to(ROOT)
            if any(part.startswith((".", "_")) for part in relative.parts):
                continue
            found.append(".".join(relative.parts))
    return found


def _engine_modules() -> list[str]:
    engine = importlib.import_module("engine")
    return sorted(
        info.name
        for info in pkgutil.walk_packages(engine.__path__, prefix="engine.")
        if not info.ispkg
    )


PACKAGES = _packages()


def test_packages_found() -> None:
    assert {"engine", "engine.crypto", "engine.net", "api", "models"} <= set(PACKAGES)


@pytest.mark.parametrize("name", PACKAGES)
def test_package_all(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"package {name} has no __all__"
    assert all(isinstance(item, str) for item in exported)
    assert len(exported) == len(set(exported)), f"duplicates in {name}.__all__"
    missing = [item for item in exported if not hasattr(module, item)]
    assert not missing, f"{name}.__all__ names missing attributes: {missing}"


@pytest.mark.parametrize("name", _engine_modules())
def test_engine_module_all(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", [])
    missing = [item for item in exported if not hasattr(module, item)]
    assert not missing, f"{name}.__all__ names missing attributes: {missing}"


def test_engine_public_names_are_importable_from_the_top() -> None:
    import engine
    import engine.crypto

    for package in (engine, engine.crypto):
        namespace: dict[str, object] = {}
        exec(f"from {package.__name__} import *", namespace)
        assert set(package.__all__) <= set(namespace)
