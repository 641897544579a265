"""The one atomic file writer: exact permission bits, text or bytes, nothing left behind on failure."""
import stat

import pytest

from fedgrad.files import PRIVATE_MODE, PUBLIC_MODE, is_private, write_atomic


def test_write_atomic_sets_the_mode_exactly_and_replaces(tmp_path):
    path = tmp_path / "secret.bin"
    write_atomic(path, b"one", PRIVATE_MODE)
    assert path.read_bytes() == b"one" and stat.S_IMODE(path.stat().st_mode) == 0o600 and is_private(path)
    write_atomic(path, "twö")  # text is written as UTF-8, with the public mode by default
    assert path.read_text(encoding="utf-8") == "twö" and stat.S_IMODE(path.stat().st_mode) == PUBLIC_MODE
    assert not is_private(path)
    assert [p.name for p in tmp_path.iterdir()] == ["secret.bin"]


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    path = tmp_path / "data.txt"
    write_atomic(path, "kept")
    with pytest.raises(TypeError):
        write_atomic(path, 42)  # type: ignore[arg-type]  # not bytes or text, on purpose
    assert path.read_text() == "kept" and [p.name for p in tmp_path.iterdir()] == ["data.txt"]
