"""Scenario loading: defaults, overrides, and one clear ConfigError per kind of mistake."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from fedgrad.errors import ConfigError
from fedgrad.scenario import Scenario, load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def write(tmp_path: Path, text: str, name: str = "exp.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path, overrides: list[str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_scenario(path, overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_empty_file_gives_documented_defaults(tmp_path):
    s = load_scenario(write(tmp_path, ""))
    assert s.name == "exp" and s.seed == 0
    assert (s.data.corpus, s.data.test_fraction, s.data.partition, s.data.alpha) == (
        "spamassassin", 0.2, "dirichlet", 0.5)
    assert (s.data.min_count, s.data.max_len, s.data.max_vocab) == (2, 500, 0)
    assert (s.model.name, s.model.hidden) == ("book", 32)
    assert (s.train.epochs, s.train.batch_size, s.train.lr, s.train.optimizer) == (1, 500, 0.01, "sgd")
    assert (s.train.momentum, s.train.device) == (0.0, "cpu")
    f = s.federation
    assert (f.clients, f.clients_per_round, f.rounds, f.min_clients) == (10, 10, 10, 2)
    assert (f.strategy, f.prox_mu, f.server_lr, f.round_timeout_s) == ("fedavg", 0.0, 1.0, 60.0)
    assert (f.processes, f.max_clients, f.effective_max_clients) == (0, 0, 10)
    p = s.privacy
    assert (p.mode, p.key_bits, p.insecure_key_bits, p.clip, p.value_bits) == ("none", 2048, False, 1.0, 16)
    assert (p.delta, p.dp_placement) == (0.0, "central")
    assert s.output.dir == "runs"


def test_scenario_is_frozen(tmp_path):
    s = load_scenario(write(tmp_path, ""))
    with pytest.raises(AttributeError):
        s.train.lr = 1.0  # type: ignore[misc]


def test_name_from_file_wins_only_when_absent(tmp_path):
    assert load_scenario(write(tmp_path, 'name = "custom"')).name == "custom"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[train]\nlrate = 0.1", r"^train\.lrate: unknown key"),
        ("colour = 1", r"^colour: unknown key"),
        ("[training]\nlr = 0.1", r"^training: unknown key"),
        ('[train]\nlr = "fast"', r"^train\.lr: expected a number \(got string 'fast'\)"),
        ("[train]\nepochs = 1.5", r"^train\.epochs: expected an integer"),
        ("[train]\nepochs = true", r"^train\.epochs: expected an integer \(got boolean True\)"),
        ("[privacy]\ninsecure_key_bits = 1", r"^privacy\.insecure_key_bits: expected true or false"),
        ('[model]\nname = "cnn"',
         r'^model\.name: must be one of book, logreg, mlp, lstm or "package.module:factory" \(got .cnn.\)'),
        ('[privacy]\nmode = "homomorphic"',
         r"^privacy\.mode: must be one of none, paillier-trusted, paillier-naive, dp, paillier"),
        ('[train]\ndevice = "gpu"', r"^train\.device: must be"),
        ("[data]\ntest_fraction = 1.0", r"^data\.test_fraction: must be < 1 \(got 1\.0\)"),
        ("[train]\nlr = 0", r"^train\.lr: must be > 0"),
        ("[train]\nlr = inf", r"^train\.lr: must be finite"),
        ("[federation]\nrounds = 0", r"^federation\.rounds: must be >= 1 \(got 0\)"),
        ("seed = -3", r"^seed: must be >= 0"),
        ('name = "a b"', r"^name: must be letters"),
        ("train = 3", r"^train: must be a table"),
        ('[data]\ncorpus = ""', r"^data\.corpus: must not be empty"),
    ],
)
def test_bad_values_name_the_key(tmp_path, text, expected):
    assert re.search(expected, error_of(write(tmp_path, text)))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[federation]\nclients = 10\nclients_per_round = 12",
         "federation.clients_per_round: must be <= federation.clients (got 12 > 10)"),
        ("[federation]\nclients_per_round = 3\nmin_clients = 4",
         "federation.min_clients: must be <= federation.clients_per_round (got 4 > 3)"),
        ("[federation]\nprocesses = 11", "federation.processes: must be <= federation.clients (got 11 > 10)"),
        ("[federation]\nmax_clients = 5", "federation.max_clients: must be 0 (auto) or >= federation.clients"),
        ('[federation]\nstrategy = "fedprox"', "federation.prox_mu: must be > 0"),
        ("[federation]\nprox_mu = 0.1", "federation.prox_mu: only used with strategy"),
        ('[data]\npartition = "book"', "federation.clients: the book partition has exactly 3 clients (got 10)"),
        ('[train]\noptimizer = "adam"\nmomentum = 0.9', "train.momentum: only used with optimizer"),
        ("[privacy]\nkey_bits = 1024", "privacy.key_bits: must be >= 2048 (got 1024); set privacy.insecure_key_bits"),
        # the crypto's key-size policy (fedgrad.crypto.keys), not a second copy of it: 4096 is no key size it makes
        ("[privacy]\nkey_bits = 4096", "privacy.key_bits: must be one of (2048, 3072), got 4096"),
        ("[privacy]\nkey_bits = 255\ninsecure_key_bits = true", "privacy.key_bits: must be an even number >= 128"),
    ],
)
def test_cross_field_rules(tmp_path, text, expected):
    assert error_of(write(tmp_path, text)).startswith(expected)


def test_insecure_flag_allows_small_keys(tmp_path):
    s = load_scenario(write(tmp_path, "[privacy]\nkey_bits = 256\ninsecure_key_bits = true"))
    assert s.privacy.key_bits == 256
    assert load_scenario(write(tmp_path, "[privacy]\nkey_bits = 3072")).privacy.key_bits == 3072


def test_overrides_use_toml_values_and_bare_strings(tmp_path):
    path = write(tmp_path, "[train]\nlr = 0.5\n[federation]\nclients = 20\nclients_per_round = 20")
    s = load_scenario(
        path,
        ["train.lr=0.05", "federation.clients_per_round=4", 'privacy.mode="dp"', "privacy.delta=1e-5",
         "data.corpus=/data/enron spam", "seed=7", "train.epochs = 3", "privacy.insecure_key_bits=true"],
    )
    assert s.train.lr == 0.05 and s.federation.clients_per_round == 4 and s.federation.clients == 20
    assert s.privacy.mode == "dp" and s.privacy.delta == 1e-5 and s.privacy.insecure_key_bits is True
    assert s.data.corpus == "/data/enron spam" and s.seed == 7 and s.train.epochs == 3


def test_integer_override_for_float_key_is_a_float(tmp_path):
    s = load_scenario(write(tmp_path, ""), ["train.lr=1"])
    assert s.train.lr == 1.0 and isinstance(s.train.lr, float)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.lr", r"^--set 'train\.lr': expected section\.key=value"),
        ("train.nope=1", r"^train\.nope: unknown key"),
        ("trian.lr=1", r"^trian\.lr: unknown key"),
        ("train.lr.x=1", r"^train\.lr\.x: unknown key"),
        ("federation.clients=1O", r"^federation\.clients: expected an integer \(got string '1O'\)"),
        ("federation.clients=2", r"^federation\.clients_per_round: must be <= federation\.clients \(got 10 > 2\)"),
    ],
)
def test_bad_overrides(tmp_path, override, expected):
    assert re.search(expected, error_of(write(tmp_path, ""), [override]))


def test_unreadable_and_malformed_files(tmp_path):
    assert error_of(tmp_path / "missing.toml").startswith(f"{tmp_path / 'missing.toml'}: cannot read scenario")
    assert "invalid TOML" in error_of(write(tmp_path, "[train\nlr = 1"))


def test_to_toml_round_trips(tmp_path):
    original = load_scenario(
        write(tmp_path, 'name = "rt"\nseed = 3\n[data]\ncorpus = "C:\\\\mails\\\\\\"q\\" é"\n'
                        '[privacy]\nmode = "dp"\ndelta = 1e-7')
    )
    assert original.data.corpus == 'C:\\mails\\"q" é'
    again = load_scenario(write(tmp_path, original.to_toml(), name="other.toml"))
    assert again == original
    assert Scenario.from_dict(original.to_dict()) == original


def test_to_dict_has_every_section():
    s = Scenario.from_dict({}, default_name="d")
    assert list(s.to_dict()) == ["name", "seed", "code_dir", "data", "model", "train", "federation", "privacy",
                                 "attack", "output"]
    with pytest.raises(ConfigError, match=r"^name: missing"):
        Scenario.from_dict({})


def test_shipped_scenarios_load():
    names = {path.stem for path in SCENARIOS.glob("*.toml")}
    assert {"spam_book", "spam_fedavg", "spam_many", "spam_paillier"} <= names
    for name in names:
        assert load_scenario(SCENARIOS / f"{name}.toml").name == name
    book = load_scenario(SCENARIOS / "spam_book.toml")
    assert (book.model.name, book.train.lr, book.train.batch_size, book.data.partition) == ("book", 0.01, 500, "book")
    fedavg = load_scenario(SCENARIOS / "spam_fedavg.toml")
    assert (fedavg.federation.clients, fedavg.data.alpha, fedavg.federation.rounds) == (10, 0.5, 10)
    many = load_scenario(SCENARIOS / "spam_many.toml")
    assert (many.federation.clients, many.federation.clients_per_round) == (1000, 100)
