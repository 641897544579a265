"""The privacy modes by name: one line each, and nothing else, so that the scenario schema can list them without
importing any mode. ``fedgrad.modes.resolve`` turns a name into its mode; modules are imported only when their
mode is used (``dp-accounting`` alone brings in scipy)."""
from __future__ import annotations

#: ``privacy.mode`` -> "module:class" of its :class:`~fedgrad.modes.base.PrivacyMode`.
MODES: dict[str, str] = {
    "none": "fedgrad.modes.plain:PlainMode",
    "paillier-trusted": "fedgrad.modes.paillier_trusted:TrustedPaillierMode",
    "paillier-naive": "fedgrad.modes.paillier_trusted:NaivePaillierMode",
    "dp": "fedgrad.modes.dp:DPMode",
    "paillier": "fedgrad.modes.paillier:PaillierMode",
    "paillier-masked": "fedgrad.modes.paillier_masked:PaillierMaskedMode",
}
MODE_NAMES: tuple[str, ...] = tuple(MODES)
