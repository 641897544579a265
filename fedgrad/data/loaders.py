"""`load_corpus`: one entry point for every corpus fedgrad reads, dispatched by what `source` is.

* ``None`` or ``"spamassassin"``: the default SpamAssassin corpus (fetched once, then cached);
* a directory holding ``spam.txt`` and ``ham.txt``: the book's format, one email per line;
* any other directory, or a tar archive: the Enron-spam layout (see `fedgrad.data.enron`);
* ``.csv``: a header row naming the text and label columns;
* ``.tsv``/``.txt``: ``label<TAB>text`` lines.

Labels are ``spam``/``ham`` or ``1``/``0``. Bytes are decoded as UTF-8, falling back to Latin-1,
so no file is rejected for its encoding; a malformed record is a `DataError` naming file and line.
Empty emails are kept with empty text (`fedgrad data info` counts them).
"""
from __future__ import annotations

import codecs
import contextlib
import csv
import io
import sys
from pathlib import Path

from fedgrad.data.charset import decode_bytes
from fedgrad.data.corpus import HAM, SPAM, Email, parse_label
from fedgrad.data.enron import load_enron_archive, load_enron_dir
from fedgrad.data.files import read_bytes
from fedgrad.data.spamassassin import load_spamassassin
from fedgrad.errors import DataError

DEFAULT_CORPUS = "spamassassin"
_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_EXPECTED = "'spamassassin', a directory (Enron ham/ + spam/, or spam.txt + ham.txt), a .tar.gz, .csv, .tsv or .txt"


def load_corpus(
    source: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    text_column: str = "text",
    label_column: str = "label",
) -> list[Email]:
    """Every email of `source` in a deterministic order (see the module docstring for the formats)."""
    if source is None or str(source) == DEFAULT_CORPUS:
        return load_spamassassin(cache_dir)
    path = Path(source).expanduser()
    if path.is_dir():
        if (path / "spam.txt").is_file() and (path / "ham.txt").is_file():
            return load_book_dir(path)
        return load_enron_dir(path)
    if not path.is_file():
        raise DataError(f"corpus not found: {path} (expected {_EXPECTED})")
    name = path.name.lower()
    if name.endswith(_ARCHIVE_SUFFIXES):
        return load_enron_archive(path)
    if name.endswith(".csv"):
        return load_csv(path, text_column=text_column, label_column=label_column)
    if name in ("spam.txt", "ham.txt"):
        raise DataError(f"{path} is half of the book's format: pass the directory holding spam.txt and ham.txt")
    if name.endswith((".tsv", ".txt")):
        return load_tsv(path)
    raise DataError(f"unsupported corpus file {path} (expected {_EXPECTED})")


def load_book_dir(directory: Path) -> list[Email]:
    """The book's ``spam.txt``/``ham.txt``: every line is one email (spam first, then ham)."""
    emails = []
    for file_name, label in (("spam.txt", SPAM), ("ham.txt", HAM)):
        path = directory / file_name
        emails += [Email(decode_bytes(line), label, f"{file_name}:{number}") for number, line in _lines(path)]
    return _non_empty(emails, directory)


def load_tsv(path: Path) -> list[Email]:
    """``label<TAB>text`` per line; blank lines are skipped, and a first line labelled ``label`` is a header."""
    emails = []
    for number, line in _lines(path):
        if not line.strip() or (number == 1 and line.split(b"\t", 1)[0].strip().lower() == b"label"):
            continue
        label_field, tab, text = decode_bytes(line).partition("\t")
        label = parse_label(label_field)
        if label is None or not tab:
            raise DataError(f"{path}:{number}: expected 'label<TAB>text' with label spam/ham/1/0, got {line[:40]!r}")
        emails.append(Email(text, label, f"{path.name}:{number}"))
    return _non_empty(emails, path)


def load_csv(path: Path, *, text_column: str = "text", label_column: str = "label") -> list[Email]:
    """A CSV with a header row; `text_column` and `label_column` name the columns to read."""
    content = decode_bytes(read_bytes(path).removeprefix(codecs.BOM_UTF8))
    reader = csv.DictReader(io.StringIO(content, newline=""))
    emails = []
    with _csv_fields_of_any_size():
        try:
            columns = reader.fieldnames or []
            missing = [column for column in (text_column, label_column) if column not in columns]
            if missing:
                raise DataError(
                    f"{path}: no column {missing[0]!r} (columns: {', '.join(columns) or 'none'}); "
                    "choose with text_column/label_column (--text-column/--label-column)"
                )
            for row in reader:
                label, text = parse_label(row[label_column]), row[text_column]
                if label is None or text is None:
                    raise DataError(f"{path}:{reader.line_num}: bad label {row[label_column]!r} or missing text "
                                    "(labels: spam/ham/1/0)")
                emails.append(Email(text, label, f"{path.name}:{reader.line_num}"))
        except csv.Error as exc:
            raise DataError(f"{path}:{reader.line_num}: {exc}") from None
    return _non_empty(emails, path)


@contextlib.contextmanager
def _csv_fields_of_any_size():
    """Whole emails easily exceed csv's default 128 KiB field limit; lift it only while reading."""
    previous = csv.field_size_limit(sys.maxsize)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _lines(path: Path) -> list[tuple[int, bytes]]:
    """Numbered lines (1-based), split on LF, CRLF or CR, each decoded separately by the caller."""
    return list(enumerate(read_bytes(path).splitlines(), start=1))


def _non_empty(emails: list[Email], source: Path) -> list[Email]:
    if not emails:
        raise DataError(f"no emails in {source}")
    return emails
