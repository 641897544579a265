"""Turn bytes of unknown provenance into text without ever raising.

Mail in the wild declares charsets that do not exist (``default_charset``, ``unknown-8bit``),
misspells real ones, or lies about them (``us-ascii`` over Latin-1 bytes). The order of attempts
keeps honest declarations exact and still reads everything: the declared codec strictly, then
UTF-8 strictly, then the declared codec with replacement characters, and finally Latin-1, which
maps every byte to a character. A declared ``us-ascii`` that fails goes straight to Latin-1,
because 8-bit bytes under that label are in practice Latin-1/Windows-1252, not noise.
"""
from __future__ import annotations

import codecs
import functools


@functools.lru_cache(maxsize=512)
def codec_name(charset: str | None) -> str | None:
    """Python's canonical codec name for a declared charset, or None if it is not a usable text codec."""
    if not charset:
        return None
    name = charset.strip().strip("\"'").lower()
    try:
        # Non-empty probe: CPython decodes b"" without consulting the codec at all.
        b"x".decode(name)  # LookupError for unknown names and for bytes-to-bytes codecs (base64, zlib)
    except UnicodeDecodeError:
        pass  # a text codec in which b"x" alone is incomplete (utf-16, ...)
    except (LookupError, ValueError):
        return None
    return codecs.lookup(name).name


def decode_bytes(data: bytes, charset: str | None = None) -> str:
    """Decode `data`, trusting `charset` only as far as the bytes agree with it; never raises."""
    declared = codec_name(charset)
    for candidate in (declared, "utf-8"):
        if candidate:
            try:
                return data.decode(candidate)
            except UnicodeDecodeError:
                pass
    if declared and declared != "ascii":
        return data.decode(declared, errors="replace")
    return data.decode("latin-1")
