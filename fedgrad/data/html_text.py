"""HTML to plain words for the tokenizer.

Regular expressions rather than `html.parser`: spam HTML is deliberately malformed, and all the
tokenizer needs is the visible words, so a scan that cannot raise and stays linear in the input
beats a faithful DOM. Tags become spaces (so ``word</p><p>word`` stays two words); script, style
and comments are dropped with their content; entities are unescaped last.
"""
from __future__ import annotations

import html
import re

_INVISIBLE = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL)
# `[^<>]` (not `[^>]`) keeps a stray "<" from making every later "<" rescan to the end of the text.
_TAG = re.compile(r"<[^<>]*>")


def html_to_text(markup: str) -> str:
    """The visible text of an HTML fragment or document."""
    return html.unescape(_TAG.sub(" ", _INVISIBLE.sub(" ", markup)))
