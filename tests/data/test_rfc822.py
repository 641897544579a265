"""Raw RFC-822 messages to text: every odd shape real mail takes, and never an exception."""
import base64
import email

from hypothesis import given, settings
from hypothesis import strategies as st

from fedgrad.data import tokenize
from fedgrad.data.charset import codec_name, decode_bytes
from fedgrad.data.html_text import html_to_text
from fedgrad.data.rfc822 import message_text

MULTIPART_ALTERNATIVE = b"""From: a@example.com
Subject: Quarterly numbers
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="XX"

preamble words
--XX
Content-Type: text/plain; charset=us-ascii

plain version of the report
--XX
Content-Type: text/html; charset=us-ascii

<html><body><p>htmlonlyword version</p></body></html>
--XX--
"""

HTML_ONLY = b"""Subject: Great offer
Content-Type: text/html; charset="iso-8859-1"

<html><head><title>Cheap pills</title><style>p { color: red; }</style>
<script type="text/javascript">var hiddenscript = 1;</script></head>
<body><p>Buy&nbsp;now &amp; save</p><!-- secretcomment --><b>caf=E9</b> 5 &lt; 6</body></html>
"""


def _message(headers: str, body: bytes) -> bytes:
    return headers.encode() + b"\n\n" + body


def test_multipart_alternative_prefers_plain_text():
    text = message_text(MULTIPART_ALTERNATIVE)
    assert text.startswith("Quarterly numbers\n")
    assert "plain version of the report" in text
    assert "htmlonlyword" not in text


def test_alternative_without_plain_takes_html_and_skips_empty_plain():
    raw = MULTIPART_ALTERNATIVE.replace(b"plain version of the report", b"   ")
    assert "htmlonlyword version" in message_text(raw)


def test_html_only_keeps_visible_words_and_unescapes_entities():
    words = tokenize(message_text(HTML_ONLY))
    assert words[:2] == ["great", "offer"]
    assert {"cheap", "pills", "buy", "now", "save"} <= set(words)
    assert not {"color", "hiddenscript", "secretcomment", "html", "body", "script"} & set(words)
    assert "5 < 6" in message_text(HTML_ONLY)


def test_html_to_text_survives_stray_angle_brackets():
    assert tokenize(html_to_text("a < b <i>c</i> d > e <unclosed")) == ["a", "b", "c", "d", "e", "unclosed"]


def test_base64_and_quoted_printable_bodies_are_decoded():
    body = base64.encodebytes("Vous avez gagné un prix".encode())
    raw = _message("Subject: b64\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64", body)
    assert message_text(raw) == "b64\nVous avez gagné un prix"
    raw = _message("Subject: qp\nContent-Type: text/plain; charset=iso-8859-1\n"
                   "Content-Transfer-Encoding: quoted-printable",
                   b"Caf=E9 cr=E8me soft=\nwrapped")
    assert message_text(raw) == "qp\nCafé crème softwrapped"


def test_broken_base64_does_not_lose_the_message():
    raw = _message("Subject: broken\nContent-Transfer-Encoding: base64", b"!!!not base64 at all###")
    assert message_text(raw).startswith("broken")


def test_unknown_and_misspelled_charsets_fall_back():
    for charset in ("default_charset", "unknown-8bit", "iso-8859-1x", "unicode", "base64", '"3Diso-8859-1"'):
        raw = _message(f"Subject: cs\nContent-Type: text/plain; charset={charset}", "naïve façade".encode())
        assert message_text(raw) == "cs\nnaïve façade", charset
        latin = _message(f"Subject: cs\nContent-Type: text/plain; charset={charset}", "naïve façade".encode("latin-1"))
        assert message_text(latin) == "cs\nnaïve façade", charset


def test_declared_charset_that_lies_is_still_read():
    raw = _message("Subject: lie\nContent-Type: text/plain; charset=us-ascii", "crème".encode("latin-1"))
    assert message_text(raw) == "lie\ncrème"
    raw = _message("Subject: lie\nContent-Type: text/plain; charset=gb2312", b"\xff\xfe valid words")
    assert message_text(raw) == "lie\n\ufffd\ufffd valid words"


def test_subject_encoded_words_and_raw_8bit_headers():
    raw = _message("Subject: =?iso-8859-1?q?Gro=DFe_Chance?= =?utf-8?b?IOKCrDEwMA==?=", b"body")
    assert message_text(raw).startswith("Große Chance €100\n")
    raw = "Subject: prix réduit\n\nbody".encode("latin-1")
    assert message_text(raw).startswith("prix réduit\n")
    raw = _message("Subject: =?utf-8?b?!!broken?=", b"body")
    assert message_text(raw) == "=?utf-8?b?!!broken?=\nbody"


def test_binary_attachments_are_skipped():
    blob = base64.encodebytes(bytes(range(256)) * 8).decode()
    raw = f"""Subject: see attached
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="B"

--B
Content-Type: text/plain

the invoice is attached
--B
Content-Type: application/octet-stream; name="invoice.exe"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="invoice.exe"

{blob}
--B
Content-Type: image/png
Content-Transfer-Encoding: base64

{blob}
--B--
""".encode()
    assert tokenize(message_text(raw)) == ["see", "attached", "the", "invoice", "is", "attached"]


def test_forwarded_message_contributes_subject_and_body():
    inner = "Subject: inner subject\n\ninner body words"
    raw = f"""Subject: Fwd
Content-Type: multipart/mixed; boundary="M"

--M
Content-Type: text/plain

see below
--M
Content-Type: message/rfc822

{inner}
--M--
""".encode()
    assert tokenize(message_text(raw)) == ["fwd", "see", "below", "inner", "subject", "inner", "body", "words"]


def test_multipart_without_boundary_is_read_as_text():
    raw = _message("Subject: nb\nContent-Type: multipart/alternative", b"<p>still here</p>")
    assert tokenize(message_text(raw)) == ["nb", "still", "here"]


def test_headers_only_and_empty_messages_give_text_not_errors():
    assert message_text(b"Subject: only a subject\n") == "only a subject"
    assert message_text(b"") == ""


def test_parser_crash_falls_back_to_raw_text(monkeypatch):
    def explode(*args, **kwargs):
        raise IndexError("stdlib bug")

    monkeypatch.setattr(email, "message_from_bytes", explode)
    assert message_text(b"Subject: x\n\nstill kept") == "Subject: x\n\nstill kept"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(raw):
    assert isinstance(message_text(b"Content-Type: multipart/mixed; boundary=a\n\n--a\n" + raw), str)
    assert isinstance(message_text(raw), str)


def test_decode_bytes_order_of_attempts():
    assert decode_bytes("é".encode(), None) == "é"
    assert decode_bytes("é".encode("latin-1"), None) == "é"
    assert decode_bytes("é".encode("cp1252"), "windows-1252") == "é"
    assert decode_bytes("€".encode("cp1252"), "windows-1252") == "€"
    assert decode_bytes("中文".encode("gb2312"), "GB2312") == "中文"
    assert decode_bytes(b"ok \xff", "gb2312") == "ok \ufffd"
    assert codec_name(' "ISO-8859-1" ') == "iso8859-1"
    assert codec_name("ks_c_5601-1987") == "euc_kr"
    assert codec_name("default_charset") is None
    assert codec_name("zlib") is None
    assert codec_name("base64") is None
    assert codec_name("UTF-16") == "utf-16"
