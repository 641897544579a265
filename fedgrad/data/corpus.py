"""The unit every loader produces: one email's text and its label."""
from __future__ import annotations

from dataclasses import dataclass

SPAM = 1
HAM = 0

_LABEL_WORDS = {"spam": SPAM, "ham": HAM, "1": SPAM, "0": HAM}


@dataclass(frozen=True, slots=True)
class Email:
    """`text` is subject + body (possibly empty); `label` is 1 for spam, 0 for ham;
    `origin` names where it came from (``spam/0001.txt``, ``data.tsv:12``) for reports and errors."""

    text: str
    label: int
    origin: str = ""


def parse_label(value: str | None) -> int | None:
    """`spam`/`ham`/`1`/`0` (any case, surrounding blanks ignored) to 1/0; None for anything else."""
    return _LABEL_WORDS.get(value.strip().lower()) if value is not None else None


def label_counts(emails: list[Email]) -> dict[str, int]:
    """Counts shown by `fedgrad data info` and `fedgrad data fetch`."""
    spam = sum(email.label for email in emails)
    return {
        "emails": len(emails),
        "spam": spam,
        "ham": len(emails) - spam,
        "empty": sum(1 for email in emails if not email.text.strip()),
    }
