"""The Enron-spam layout: ``ham/`` and ``spam/`` folders of ``.txt`` files.

Accepted as a directory or as a tar archive (``.tar.gz``, ``.tgz``, ...), with the folders at the
top or nested (``enron1/ham``, ``enron2/spam``, ...): every ``.txt`` file whose parent folder is
named ``ham`` or ``spam`` (any case) is one email, read in sorted path order.
Enron-spam's preprocessed files are ``Subject: <subject>`` on the first line followed directly by
the body; anything else is parsed as a raw RFC-822 message.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path, PurePath

from fedgrad.data.charset import decode_bytes
from fedgrad.data.corpus import HAM, SPAM, Email
from fedgrad.data.files import iter_archive_files, read_bytes
from fedgrad.data.rfc822 import message_text
from fedgrad.errors import DataError

_FOLDER_LABELS = {"spam": SPAM, "ham": HAM}
_SUBJECT = b"Subject:"


def load_enron_dir(root: Path) -> list[Email]:
    names = sorted(name for name in (path.relative_to(root) for path in root.rglob("*")) if _label(name) is not None)
    return _emails(root, ((name, read_bytes(root / name)) for name in names if (root / name).is_file()))


def load_enron_archive(archive: Path) -> list[Email]:
    return _emails(archive, sorted(item for item in iter_archive_files(archive) if _label(item[0]) is not None))


def enron_text(raw: bytes) -> str:
    """Text of one Enron-spam file (subject line + body), or of a raw message placed in the layout."""
    if raw.startswith(_SUBJECT):
        subject, _, body = raw[len(_SUBJECT):].partition(b"\n")
        return decode_bytes(subject).strip() + "\n" + decode_bytes(body)
    return message_text(raw)


def _emails(source: Path, files: Iterable[tuple[PurePath, bytes]]) -> list[Email]:
    # the callers pass labelled files only
    emails = [Email(enron_text(raw), label, name.as_posix()) for name, raw in files
              if (label := _label(name)) is not None]
    if not emails:
        raise DataError(f"no emails in {source}: expected .txt files in ham/ and spam/ folders (Enron-spam layout)")
    return emails


def _label(name: PurePath) -> int | None:
    if name.suffix.lower() != ".txt" or len(name.parts) < 2:
        return None
    return _FOLDER_LABELS.get(name.parent.name.lower())

