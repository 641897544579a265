"""Where fetched and parsed corpora live, and the parsed-corpus file format.

Parsing ~6,000 raw messages takes seconds; reading them back from one JSON-lines file takes
a fraction of one. The file starts with a header line naming what it holds, so a cache written by
another parser version or for another corpus is rebuilt instead of trusted.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from fedgrad.data.corpus import Email
from fedgrad.files import PUBLIC_MODE, write_atomic

CACHE_ENV = "FEDGRAD_CACHE"
_FORMAT = "fedgrad-parsed-corpus"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """`cache_dir`, else `$FEDGRAD_CACHE`, else `~/.cache/fedgrad`."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fedgrad"


def write_parsed_corpus(path: Path, emails: list[Email], source: str) -> None:
    """Write atomically (temp file + rename) so an interrupted run never leaves a half cache behind.

    Mode 644: a cache may be shared by several accounts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"format": _FORMAT, "source": source, "count": len(emails)}) + "\n"]
    lines += [json.dumps({"label": email.label, "origin": email.origin, "text": email.text}) + "\n" for email in emails]
    write_atomic(path, "".join(lines), PUBLIC_MODE)


def read_parsed_corpus(path: Path, source: str) -> list[Email] | None:
    """The cached emails, or None when the file is missing, for another source, or damaged."""
    try:
        with path.open(encoding="utf-8") as lines:
            header = json.loads(next(lines))
            if header.get("format") != _FORMAT or header.get("source") != source:
                return None
            emails = [Email(record["text"], record["label"], record["origin"]) for record in map(json.loads, lines)]
    except (OSError, StopIteration, ValueError, KeyError, TypeError, AttributeError):
        return None
    return emails if len(emails) == header["count"] else None
