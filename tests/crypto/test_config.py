from typing import Any

import pytest

from fedgrad.crypto import SecureAggConfig
from fedgrad.errors import ConfigError

BASE: dict[str, Any] = dict(mode="paillier", n_params=1000, clip=0.5, value_bits=16, max_clients=100)


def test_dict_round_trip():
    cfg = SecureAggConfig(**BASE)
    assert SecureAggConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict() == {**BASE, "max_weight": 0, "short_randomizer": False}
    weighted = SecureAggConfig(**BASE, max_weight=1000, short_randomizer=True)
    assert SecureAggConfig.from_dict(weighted.to_dict()) == weighted and weighted.integer_weights
    assert not cfg.integer_weights


def test_frozen():
    with pytest.raises(AttributeError):
        SecureAggConfig(**BASE).clip = 2.0  # type: ignore[misc]  # assigning to a frozen field, on purpose


@pytest.mark.parametrize("key,value", [
    ("mode", "rsa"), ("n_params", 0), ("n_params", 1.5), ("clip", 0.0), ("clip", float("inf")),
    ("clip", float("nan")), ("clip", True), ("value_bits", 1), ("value_bits", 33), ("max_clients", 0),
    ("max_clients", (1 << 20) + 1), ("max_clients", True), ("max_weight", -1), ("max_weight", 1.5),
    ("max_weight", True), ("max_weight", (1 << 30) + 1), ("short_randomizer", 1), ("short_randomizer", "yes"),
])
def test_bad_values_are_config_errors(key, value):
    with pytest.raises(ConfigError, match=key):
        SecureAggConfig(**{**BASE, key: value})


def test_from_dict_rejects_unknown_and_missing_keys():
    with pytest.raises(ConfigError, match=r"unknown.*bogus"):
        SecureAggConfig.from_dict({**BASE, "bogus": 1})
    with pytest.raises(ConfigError, match="incomplete"):
        SecureAggConfig.from_dict({k: v for k, v in BASE.items() if k != "max_clients"})


def test_fingerprint_binds_every_field_and_the_key():
    cfg = SecureAggConfig(**BASE)
    prints = {cfg.fingerprint(97), cfg.fingerprint(101)}
    for key, value in [("mode", "paillier-naive"), ("n_params", 1001), ("clip", 0.25), ("value_bits", 12),
                       ("max_clients", 99), ("max_weight", 10), ("short_randomizer", True)]:
        prints.add(SecureAggConfig(**{**BASE, key: value}).fingerprint(97))
    assert len(prints) == 9 and all(len(p) == 8 for p in prints)


def test_integer_weights_must_keep_slot_sums_in_int64():
    SecureAggConfig(**{**BASE, "value_bits": 16, "max_clients": 1 << 20, "max_weight": 1 << 26})  # 62-bit slots
    with pytest.raises(ConfigError, match="62"):
        SecureAggConfig(**{**BASE, "value_bits": 16, "max_clients": 1 << 20, "max_weight": 1 << 27})
