"""Text of a raw RFC-822 message: its subject and the words of its body.

Parsing uses the `compat32` policy: it records defects instead of raising and keeps the raw bytes
of 8-bit headers, which `charset.decode_bytes` then reads. Body rules:

* multipart/alternative: the text/plain alternative when it has words, else the richest
  (last) non-empty one, usually HTML;
* other multiparts: every part's text, in order; message/rfc822 parts contribute their own
  subject and body;
* text/html is reduced to its visible words; other text/* parts are taken as they are;
* binary parts (images, archives, applications) are skipped: they carry no words;
* a part declared multipart whose boundary is missing arrives as one text blob and is read
  as (possibly HTML) text rather than dropped.
"""
from __future__ import annotations

import email
import email.errors
import email.header
import email.policy
from email.message import Message
from typing import cast

from fedgrad.data.charset import decode_bytes
from fedgrad.data.html_text import html_to_text

_POLICY = email.policy.compat32.clone(raise_on_defect=False)


def message_text(raw: bytes) -> str:
    """Subject and body text of one raw message; never raises and never returns less than the raw text would give."""
    try:
        return _message_text(email.message_from_bytes(raw, policy=_POLICY))
    except Exception:  # noqa: BLE001 - the stdlib parser has had crash bugs on hostile input; keep the message as raw text
        return decode_bytes(raw)


def _message_text(message: Message) -> str:
    return "\n".join(filter(None, (header_text(message.get("subject")), _body_text(message))))


def header_text(value: str | email.header.Header | None) -> str:
    """Decode a header value: RFC 2047 encoded words and raw 8-bit bytes, each with charset fallback."""
    if value is None:
        return ""
    try:
        chunks = email.header.decode_header(value)
    except email.errors.HeaderParseError:  # e.g. an encoded word with broken base64
        return str(value)
    return "".join(decode_bytes(chunk, charset) if isinstance(chunk, bytes) else chunk for chunk, charset in chunks)


def _body_text(part: Message) -> str:
    maintype = part.get_content_maintype()
    if part.is_multipart():
        # a multipart payload is the list of its sub-parts (the stubs cannot tell from is_multipart())
        children = cast(list[Message], part.get_payload())
        if maintype == "message":
            return "\n".join(filter(None, map(_message_text, children)))
        if part.get_content_subtype() == "alternative":
            return _best_alternative(children)
        return "\n".join(filter(None, map(_body_text, children)))
    if maintype not in ("text", "multipart"):
        return ""
    payload = part.get_payload(decode=True)  # bytes, or None when there is no payload
    if not isinstance(payload, bytes):
        payload = b""
    text = decode_bytes(payload, part.get_content_charset())
    return html_to_text(text) if maintype == "multipart" or part.get_content_subtype() == "html" else text


def _best_alternative(parts: list[Message]) -> str:
    rendered = [(part.get_content_type(), _body_text(part)) for part in parts]
    for content_type, text in rendered:
        if content_type == "text/plain" and text.strip():
            return text
    non_empty = [text for _, text in rendered if text.strip()]
    return non_empty[-1] if non_empty else ""
