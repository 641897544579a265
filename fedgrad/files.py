"""Atomic file writes with the right permissions from the first byte: the one writer every part uses.

Run files (``config.toml``, ``summary.json``, reports), the parsed-corpus cache, checkpoints and secrets
(private keys, the token secret) all go through :func:`write_atomic`. Readers never see a half-written file,
and a process killed mid-write leaves the previous version in place. Secrets must never exist on disk readable
by others, not even for the moment between ``open`` and ``chmod``: so the data goes to a temporary file created
with its final mode, is flushed to disk, and is renamed over the destination (``os.replace`` is atomic on POSIX).
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644


def write_atomic(path: Path, data: bytes | str, mode: int = PUBLIC_MODE) -> None:
    """Write ``data`` (``str`` is written as UTF-8) to ``path`` atomically; the file has permission bits ``mode``
    (umask not applied)."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(fd, mode)  # os.open's mode is filtered by the umask; fchmod sets it exactly
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable: without this a power loss can bring back the old file."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_private(path: Path) -> bool:
    """True when no one but the owner can read or write ``path``."""
    return path.stat().st_mode & 0o077 == 0
