"""engine.errors: one hierarchy, stable unique codes, safe serialisation."""

from __future__ import annotations

import json
import re

import pytest

import engine.errors as errors
from engine.errors import (
    FrameTooLargeError,
    GlueberryError,
    MalformedFrameError,
    all_error_classes,
)

CLASSES = all_error_classes()


def test_root_first_and_complete() -> None:
    assert CLASSES[0] is GlueberryError
    exported = {
        name
        for name in errors.__all__
        if isinstance(getattr(errors, name), type)
        and issubclass(getattr(errors, name), BaseException)
    }
    assert exported == {cls.__name__ for cls in CLASSES}
    assert len(CLASSES) == len(set(CLASSES))


def test_every_class_has_a_unique_code_of_its_own() -> None:
    codes = [cls.code for cls in CLASSES]
    duplicates = sorted({c for c in codes if codes.count(c) > 1})
    assert not duplicates, f"codes used by more than one class: {duplicates}"
    for cls in CLASSES:
        assert "code" in vars(cls), f"{cls.__name__} inherits its code instead of defining one"
        assert re.fullmatch(r"[a-z][a-z0-9_]*", cls.code), cls.code


def test_tree_in_module_docstring_lists_every_class_with_its_code() -> None:
    doc = errors.__doc__ or ""
    for cls in CLASSES:
        assert f"{cls.__name__} ({cls.code})" in doc, cls.__name__


def test_every_class_documents_itself() -> None:
    for cls in CLASSES:
        assert cls.__doc__, cls.__name__


@pytest.mark.parametrize("cls", [c for c in CLASSES if c is not FrameTooLargeError])
def test_construct_and_serialise(cls: type[GlueberryError]) -> None:
    default = cls()
    assert default.message  # falls back to the docstring
    assert isinstance(default, GlueberryError)
    details = {"peer": "12D3KooW", "n": 3}
    err = cls("something failed", details=details)
    details["n"] = 4  # the error keeps its own copy
    assert err.to_dict() == {
        "code": cls.code,
        "message": "something failed",
        "details": {"peer": "12D3KooW", "n": 3},
    }
    assert str(err) == "something failed"
    json.dumps(err.to_dict())


def test_frame_too_large_carries_sizes() -> None:
    err = FrameTooLargeError(4 * 1024**3, 1024)
    assert (err.announced, err.limit) == (4 * 1024**3, 1024)
    assert err.details == {"announced": 4 * 1024**3, "limit": 1024}
    assert err.code == "frame_too_large"
    assert "4294967296" in err.message
    assert isinstance(err, errors.FrameError)


def test_hierarchy_relations_callers_rely_on() -> None:
    assert issubclass(MalformedFrameError, errors.FrameError)
    assert issubclass(errors.InsecureKeyFileError, errors.KeyFileError)
    assert issubclass(errors.KeyFileError, errors.CryptoError)
    assert issubclass(errors.DecryptionError, errors.CryptoError)
    assert issubclass(errors.CipherClosedError, errors.CryptoError)
    assert issubclass(errors.WeakSharedSecretError, errors.CryptoError)
    assert issubclass(errors.InvalidPublicKeyError, errors.InvalidInputError)
    assert not issubclass(errors.LocalProtocolError, errors.RemoteProtocolError)
    assert not issubclass(errors.RemoteProtocolError, errors.LocalProtocolError)
