"""Files read from disk are untrusted input: address books and identity key files."""

from __future__ import annotations

import copy
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.crypto.identity import Identity
from engine.crypto.secret import SecretBytes
from engine.errors import InsecureKeyFileError, InvalidInputError, KeyFileError
from models.addressbook import load_addressbook


def test_deeply_nested_address_book_is_invalid_input(tmp_path: Path) -> None:
    path = tmp_path / "addressbook.json"
    path.write_bytes(b'{"version":1,"peers":' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    with pytest.raises(InvalidInputError, match="nested too deeply"):
        load_addressbook(path)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o610])
def test_key_file_readable_or_writable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "node.key"
    with Identity.generate() as ident:
        ident.save(path)
    assert (path.stat().st_mode & 0o777) == 0o600
    os.chmod(path, mode)
    with pytest.raises(InsecureKeyFileError) as info:
        Identity.load(path)
    # The refusal names the file and the mode, never the key bytes.
    assert path.read_bytes()[-32:].hex() not in str(info.value)


def test_oversized_key_file_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.ftruncate(fd, 1 << 30)  # sparse: 1 GiB that costs nothing on disk
    os.close(fd)
    with pytest.raises(KeyFileError):
        Identity.load(path)


def test_database_password_stays_out_of_settings_repr_and_errors() -> None:
    from pydantic import ValidationError

    from models.settings import DatabaseSettings

    settings = DatabaseSettings(database_url="postgresql://user:hunter2@db/glueberry")
    assert "hunter2" in settings.url  # still usable
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings)
    with pytest.raises(ValidationError) as info:
        DatabaseSettings(database_url="mysql://user:hunter2@db/glueberry")
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    "leak",
    [
        lambda s: pickle.dumps(s),
        lambda s: pickle.dumps(s, protocol=0),
        lambda s: copy.copy(s),
        lambda s: copy.deepcopy(s),
    ],
)
def test_secret_bytes_cannot_be_pickled_or_copied(leak: Callable[[SecretBytes], object]) -> None:
    with SecretBytes(bytearray(b"\x42" * 32)) as secret, pytest.raises(TypeError):
        leak(secret)


def test_secret_holders_do_not_show_key_bytes() -> None:
    with Identity.generate() as ident:
        seed_hex = ident.seed.reveal().hex()
        for text in (repr(ident), str(ident), repr(ident.seed), f"{ident.seed}"):
            assert seed_hex not in text
            assert seed_hex[:16] not in text
