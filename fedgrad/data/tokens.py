"""Words of an email as the models see them.

A token is a maximal run of Unicode letters and digits, lowercased. Runs longer than
`MAX_TOKEN_LEN` are dropped: in mail they are base64 blobs, hashes and glued URL fragments, which
would flood the vocabulary with one-off entries without telling spam from ham.

The bag models follow the book and look at the *set* of words of an email (``set(row.split(" "))``
in the book): `unique_tokens` keeps each word once, in order of first appearance, so truncating to
`max_len` keeps the subject and the start of the body.
"""
from __future__ import annotations

import re

MAX_TOKEN_LEN = 24
# `\w` minus "_": underscores are turned into spaces first because a plain `\w+` scan is about
# twice as fast as the equivalent class `[^\W_]+`, and tokenizing is most of building a dataset.
_WORD = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    """Every word of `text`, lowercased, in order (repeats kept)."""
    return [word for word in _WORD.findall(text.lower().replace("_", " ")) if len(word) <= MAX_TOKEN_LEN]


def unique_tokens(text: str) -> list[str]:
    """The distinct words of `text` in order of first appearance: the book's bag of words."""
    return list(dict.fromkeys(tokenize(text)))
