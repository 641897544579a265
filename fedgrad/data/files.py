"""Reading corpus files: plain files, and the regular files of a tar archive without extracting it.

For archives nothing is written to disk, so a hostile archive cannot plant files; names that would escape
the archive root (absolute, or with ``..``) are still rejected, because such an archive is not one
fedgrad should trust. Links, devices and directories are skipped: a corpus is plain files.
"""
from __future__ import annotations

import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from fedgrad.errors import DataError


def read_bytes(path: Path) -> bytes:
    """The file's bytes, or a one-line `DataError` naming it."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None


def iter_archive_files(path: Path) -> Iterator[tuple[PurePosixPath, bytes]]:
    """Yield (name inside the archive, content) for every regular file, in archive order."""
    try:
        tar = tarfile.open(path, "r:*")
    except tarfile.ReadError:
        raise DataError(f"{path} is not a tar archive (plain, gzip, bzip2 or xz)") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    with tar:
        try:
            for member in tar:
                name = PurePosixPath(member.name)
                if name.is_absolute() or ".." in name.parts:
                    raise DataError(f"unsafe path {member.name!r} in archive {path}; refusing to read it")
                if member.isfile():
                    contents = tar.extractfile(member)
                    assert contents is not None  # a regular file always has contents to extract
                    yield name, contents.read()
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise DataError(f"archive {path} is damaged or truncated ({type(exc).__name__}: {exc})") from None
