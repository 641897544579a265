"""`load_corpus` on every format users bring, including the malformed ones."""
import io
import tarfile
from pathlib import Path

import pytest

from fedgrad.data import Email, load_corpus
from fedgrad.errors import DataError


def _write(path: Path, content: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _enron_tree(root: Path) -> Path:
    _write(root / "enron1/ham/0001.1999-12-10.farmer.ham.txt", "Subject: meeting today\nsee you at noon\n")
    _write(root / "enron1/spam/0002.2004-08-01.GP.spam.txt", b"Subject: cheap meds\r\nbuy now\r\n")
    _write(root / "enron2/spam/0003.spam.txt", "Subject: prix réduit\nvente\n".encode("latin-1"))
    _write(root / "enron2/ham/0004.ham.txt", b"From: a@b.c\nSubject: raw message\n\nraw body\n")
    _write(root / "enron2/Summary.txt", "not an email: not under ham/ or spam/")
    _write(root / "enron2/ham/notes.md", "not a .txt file")
    return root


def test_enron_directory_nested_one_level(tmp_path):
    emails = load_corpus(_enron_tree(tmp_path / "enron"))
    assert emails == [
        Email("meeting today\nsee you at noon\n", 0, "enron1/ham/0001.1999-12-10.farmer.ham.txt"),
        Email("cheap meds\nbuy now\r\n", 1, "enron1/spam/0002.2004-08-01.GP.spam.txt"),
        Email("raw message\nraw body\n", 0, "enron2/ham/0004.ham.txt"),
        Email("prix réduit\nvente\n", 1, "enron2/spam/0003.spam.txt"),
    ]


def test_enron_directory_flat_and_archive_agree(tmp_path):
    flat = _enron_tree(tmp_path / "tree") / "enron1"
    assert [e.label for e in load_corpus(flat)] == [0, 1]
    archive = tmp_path / "enron.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "tree", arcname="enron")
    from_archive = load_corpus(archive)
    from_dir = load_corpus(tmp_path / "tree")
    assert [(e.text, e.label) for e in from_archive] == [(e.text, e.label) for e in from_dir]
    assert from_archive[0].origin == "enron/enron1/ham/0001.1999-12-10.farmer.ham.txt"


def test_archive_with_path_traversal_is_rejected(tmp_path):
    archive = tmp_path / "evil.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("ham/ok.txt", "../spam/escape.txt"):
            info = tarfile.TarInfo(name)
            info.size = 5
            tar.addfile(info, io.BytesIO(b"hello"))
    with pytest.raises(DataError, match=r"unsafe path '\.\./spam/escape\.txt'"):
        load_corpus(archive)
    assert not (tmp_path.parent / "spam").exists()


def test_corrupt_archive_and_empty_layout_are_data_errors(tmp_path):
    with pytest.raises(DataError, match=r"broken.tar.gz is not a tar archive"):
        load_corpus(_write(tmp_path / "broken.tar.gz", b"\x1f\x8b not really gzip"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no emails in .*ham/ and spam/"):
        load_corpus(tmp_path / "empty")


def test_book_spam_and_ham_files(tmp_path):
    _write(tmp_path / "book/spam.txt", "win money now \r\nfree offer\r\n")
    _write(tmp_path / "book/ham.txt", b"lunch at noon\n\ncaf\xe9 tomorrow\n")
    emails = load_corpus(tmp_path / "book")
    assert [(e.text, e.label) for e in emails] == [
        ("win money now ", 1), ("free offer", 1), ("lunch at noon", 0), ("", 0), ("café tomorrow", 0)]
    assert emails[3].origin == "ham.txt:2"
    with pytest.raises(DataError, match=r"pass the directory holding spam.txt and ham.txt"):
        load_corpus(tmp_path / "book/spam.txt")


def test_tsv_labels_header_blank_lines_and_empty_text(tmp_path):
    path = _write(tmp_path / "sms.tsv", "label\ttext\nspam\tWIN a prize\tnow\n\nHAM \thello there\n1\t\n0\tok\n")
    emails = load_corpus(path)
    assert [(e.text, e.label) for e in emails] == [("WIN a prize\tnow", 1), ("hello there", 0), ("", 1), ("ok", 0)]
    assert emails[1].origin == "sms.tsv:4"


@pytest.mark.parametrize("line", ["spammy\ttext", "no tab here", "\ttext without label"])
def test_tsv_bad_line_names_file_and_line(tmp_path, line):
    path = _write(tmp_path / "data.txt", f"ham\tfine\nspam\tfine too\n{line}\n")
    with pytest.raises(DataError, match=r"data\.txt:3: expected 'label<TAB>text'"):
        load_corpus(path)


def test_csv_with_named_columns_and_huge_fields(tmp_path):
    long_text = "word " * 40_000  # 200 KB: beyond csv's default field limit
    path = _write(tmp_path / "mails.csv", f'id,body,is_spam\n1,"multi\nline body",spam\n2,{long_text},0\n3,,1\n')
    emails = load_corpus(path, text_column="body", label_column="is_spam")
    assert [(e.text[:15], e.label) for e in emails] == [("multi\nline body", 1), (long_text[:15], 0), ("", 1)]
    assert emails[1].origin == "mails.csv:4"


def test_csv_missing_column_lists_the_available_ones(tmp_path):
    path = _write(tmp_path / "mails.csv", "id,body,is_spam\n1,hi,spam\n")
    with pytest.raises(DataError, match=r"no column 'text' \(columns: id, body, is_spam\)"):
        load_corpus(path)


def test_csv_bad_label_names_the_line(tmp_path):
    path = _write(tmp_path / "mails.csv", "text,label\nhello,ham\nbye,maybe\n")
    with pytest.raises(DataError, match=r"mails\.csv:3: bad label 'maybe'"):
        load_corpus(path)


def test_csv_with_bom_and_latin1_bytes(tmp_path):
    path = _write(tmp_path / "mails.csv", b"\xef\xbb\xbftext,label\nhello,ham\n")
    assert load_corpus(path) == [Email("hello", 0, "mails.csv:2")]
    path = _write(tmp_path / "latin.csv", b"text,label\ncaf\xe9,spam\n")
    assert load_corpus(path)[0].text == "café"


def test_unknown_sources_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="corpus not found"):
        load_corpus(tmp_path / "nope")
    with pytest.raises(DataError, match="unsupported corpus file"):
        load_corpus(_write(tmp_path / "mails.json", "[]"))
    with pytest.raises(DataError, match="no emails in"):
        load_corpus(_write(tmp_path / "empty.tsv", "\n\n"))
