"""Files that hold secrets (threshold key shares, client signing keys): created 0600, refused when readable by others.

Writing. `write_secret_file` never overwrites and never exposes a partial file: it creates a temporary file next
to the target with ``os.open(O_CREAT | O_EXCL | O_WRONLY, 0o600)`` (so no other user can open it between creation
and a later chmod), forces the mode to exactly 0600 (a umask can only remove bits, ``fchmod`` also drops any it
left), writes and fsyncs the contents, then ``os.link``s it to the final name, which fails if that name exists,
and removes the temporary name. A reader therefore sees either no file or the whole file.

Reading. `read_secret_file` opens without following a symlink at the last component, and refuses a file that is
not a regular file, is not owned by the current user, or whose mode grants any group/other permission, with a
one-line `CryptoError` that says how to fix it (as OpenSSH does for private keys).
"""
from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from fedgrad.crypto.errors import CryptoError

SECRET_MODE = 0o600


def write_secret_file(path: str | os.PathLike[str], data: bytes) -> Path:
    """Create `path` with mode 0600 holding `data`, atomically; `CryptoError` if it already exists."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), SECRET_MODE)
    except OSError as exc:
        raise CryptoError(f"cannot create secret file next to {target}: {exc.strerror}") from None
    try:
        try:
            os.fchmod(fd, SECRET_MODE)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise CryptoError(f"refusing to overwrite existing secret file {target}") from None
        except OSError as exc:
            raise CryptoError(f"cannot create secret file {target}: {exc.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


def read_secret_file(path: str | os.PathLike[str]) -> bytes:
    """Contents of a secret file; `CryptoError` unless it is a regular file of ours with no group/other access."""
    source = Path(path)
    try:
        fd = os.open(source, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise CryptoError(f"cannot open secret file {source}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CryptoError(f"secret file {source} is not a regular file")
        if info.st_mode & 0o077:
            raise CryptoError(f"secret file {source} has mode {stat.S_IMODE(info.st_mode):04o}, readable beyond its "
                              f"owner; run chmod 600 on it")
        if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
            raise CryptoError(f"secret file {source} belongs to uid {info.st_uid}, not to this user")
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
