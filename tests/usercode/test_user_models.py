"""User code named by a scenario: a model factory and a strategy class imported from the scenario's folder, and
every way they can break the contract, each a one-line ConfigError naming the scenario key."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

import fedgrad as fg
from client.trainer import LocalTrainer
from fedgrad.data import Shard
from fedgrad.errors import ConfigError
from fedgrad.models import SpamModel, UserModel, model_from_config
from fedgrad.nn import functional as F
from fedgrad.protocol import TaskConfig
from fedgrad.scenario import Scenario, load_scenario
from server.strategies import FedAvg, build_strategy

VOCAB = 30
GOOD_MODELS = '''
    from fedgrad import nn
    from fedgrad.models import SpamModel


    class Bag(SpamModel):
        def __init__(self, vocab_size, dim):
            super().__init__()
            self.words = nn.EmbeddingBag(vocab_size, dim, mode="mean")
            self.out = nn.Linear(dim, 1)

        def forward(self, ids):
            return self.out(self.words(ids)).reshape(-1)


    def make(vocab_size, *, seed, dim=4):
        return Bag(vocab_size, dim)


    class Plain(nn.Module):  # no loss_fn, no predict_proba: the defaults apply
        def __init__(self, vocab_size):
            super().__init__()
            self.words = nn.EmbeddingBag(vocab_size, 1)

        def forward(self, ids):
            return self.words(ids).reshape(-1)


    def plain(vocab_size, *, seed):
        return Plain(vocab_size)


    class Squared(Plain):
        def loss_fn(self, scores, labels):
            return ((scores - labels) ** 2).sum()


    def squared(vocab_size, *, seed):
        return Squared(vocab_size)
'''
BROKEN_MODELS = '''
    from fedgrad import nn


    class Wide(nn.Module):
        def __init__(self, vocab_size):
            super().__init__()
            self.words = nn.EmbeddingBag(vocab_size, 2)

        def forward(self, ids):
            return self.words(ids)  # [B, 2] instead of [B]


    def raises(vocab_size, *, seed):
        raise ValueError("no GPU here\\nsecond line")

    def not_a_module(vocab_size, *, seed):
        return [1, 2, 3]

    def wide(vocab_size, *, seed):
        return Wide(vocab_size)

    def no_parameters(vocab_size, *, seed):
        return nn.ReLU()

    def needs_option(vocab_size, *, seed, layers):
        return Wide(vocab_size)

    NOT_CALLABLE = 3
'''
STRATEGIES = '''
    from server.strategies import FedAvg, Strategy


    class Halved(FedAvg):
        name = "halved"

        def __init__(self, server_lr):
            super().__init__(server_lr / 2)


    class NoApply(Strategy):
        pass


    class NotAStrategy:
        pass
'''


def write_module(folder: Path, name: str, source: str) -> None:
    (folder / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")


@pytest.fixture
def code_dir(tmp_path) -> Path:
    """A folder outside the repository (and off sys.path) holding the user modules; unique module names per
    test, since an imported module stays in sys.modules."""
    folder = tmp_path / "usercode"
    folder.mkdir()
    suffix = tmp_path.name.replace("-", "_").replace("[", "_").replace("]", "_")
    for name, source in (("models", GOOD_MODELS), ("broken", BROKEN_MODELS), ("strategies", STRATEGIES)):
        write_module(folder, f"{name}_{suffix}", source)
    folder.joinpath("suffix").write_text(suffix)
    return folder


def ref(code_dir: Path, module: str, attribute: str) -> str:
    return f"{module}_{code_dir.joinpath('suffix').read_text()}:{attribute}"


def build(code_dir: Path, reference: str, **options) -> SpamModel:
    config = Scenario.from_dict({"name": "u", "model": {"name": reference, "options": options}}).model
    return model_from_config(config, VOCAB, seed=0, code_dir=str(code_dir))


def test_a_scenario_imports_its_factory_from_its_own_folder(code_dir):
    reference = ref(code_dir, "models", "make")
    path = code_dir / "exp.toml"
    path.write_text(f'[model]\nname = "{reference}"\noptions = {{ dim = 6 }}\n', encoding="utf-8")
    scenario = load_scenario(path)
    assert scenario.code_dir == str(code_dir.resolve()) and scenario.model.options == {"dim": 6}
    model = model_from_config(scenario.model, VOCAB, seed=0, code_dir=scenario.code_dir)
    assert isinstance(model, SpamModel) and not isinstance(model, UserModel)
    assert model.state_dict()["words.weight"].shape == (VOCAB, 6)
    again = model_from_config(scenario.model, VOCAB, seed=0, code_dir=scenario.code_dir).state_dict()
    assert all(np.array_equal(again[name], value) for name, value in model.state_dict().items())  # seeded
    # written out absolute, so a resumed run (its config.toml in the run directory) imports from the same place
    copy = code_dir / "elsewhere" / "config.toml"
    copy.parent.mkdir()
    copy.write_text(scenario.to_toml(), encoding="utf-8")
    assert load_scenario(copy) == scenario


def test_a_module_without_loss_gets_the_defaults_and_its_own_loss_wins(code_dir):
    ids = np.array([[1, 2, 3], [4, 0, 0]], dtype=np.int32)
    labels = fg.Tensor(np.array([1.0, 0.0], dtype=np.float32))
    plain = build(code_dir, ref(code_dir, "models", "plain"))
    assert isinstance(plain, UserModel) and list(plain.state_dict()) == ["net.words.weight"]
    scores = plain(ids)
    assert plain.loss_fn(scores, labels).item() == pytest.approx(
        F.binary_cross_entropy_with_logits(scores, labels).item())
    assert np.allclose(plain.predict_proba(scores).numpy(), 1 / (1 + np.exp(-scores.numpy())))
    squared = build(code_dir, ref(code_dir, "models", "squared"))
    scores = squared(ids)
    assert squared.loss_fn(scores, labels).item() == pytest.approx(float(((scores.numpy() - [1, 0]) ** 2).sum()))


@pytest.mark.parametrize(("attribute", "options", "message"), [
    ("raises", {}, r"raises\(30, seed=0, no options\) failed: ValueError: no GPU here$"),
    ("not_a_module", {}, r"returned a list, not a fedgrad.nn.Module$"),
    ("wide", {}, r"must return a Tensor of scores \[B\]; for B = 2 it returned a Tensor of shape \(2, 2\)$"),
    ("no_parameters", {}, r"returned a model without parameters"),
    ("needs_option", {}, r"failed: TypeError: .*layers"),
    ("needs_option", {"layers": 2, "width": 3}, r"needs_option\(30, seed=0, layers=2, width=3\) failed: TypeError"),
    ("NOT_CALLABLE", {}, r"is a int, not a callable factory$"),
    ("missing", {}, r"has no 'missing'$"),
])
def test_a_broken_factory_is_one_line_naming_the_key(code_dir, attribute, options, message):
    with pytest.raises(ConfigError, match=r"^model\.name: .*" + message) as error:
        build(code_dir, ref(code_dir, "broken", attribute), **options)
    assert "\n" not in str(error.value)


def test_an_unimportable_module_names_the_key_and_where_it_looked(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('[model]\nname = "no_such_module_here:make"\n', encoding="utf-8")
    scenario = load_scenario(path)
    with pytest.raises(ConfigError, match=rf"^model\.name: cannot import 'no_such_module_here' \(from {tmp_path}"):
        model_from_config(scenario.model, VOCAB, seed=0, code_dir=scenario.code_dir)


@pytest.mark.parametrize(("value", "message"), [
    ("my module:make", r"^model\.name: must be one of book, logreg, mlp, lstm or \"package.module:factory\""),
    ("pkg.mod:", r"^model\.name: must be one of"),
])
def test_a_malformed_reference_is_refused_by_the_schema(value, message):
    with pytest.raises(ConfigError, match=message):
        Scenario.from_dict({"name": "u", "model": {"name": value}})


def test_options_are_for_user_factories_and_hold_plain_values():
    with pytest.raises(ConfigError, match=r"^model\.options: only for a user factory"):
        Scenario.from_dict({"name": "u", "model": {"name": "mlp", "options": {"dim": 3}}})
    with pytest.raises(ConfigError, match=r"^model\.options\.dims: expected a string, number or boolean"):
        Scenario.from_dict({"name": "u", "model": {"name": "a:b", "options": {"dims": [1, 2]}}})
    with pytest.raises(ConfigError, match=r"^model\.options: expected a table"):
        Scenario.from_dict({"name": "u", "model": {"name": "a:b", "options": 3}})


def test_a_user_strategy_is_built_with_the_server_lr(code_dir):
    strategy = build_strategy(ref(code_dir, "strategies", "Halved"), server_lr=0.5, code_dir=str(code_dir))
    assert isinstance(strategy, FedAvg) and strategy.name == "halved" and strategy.server_lr == 0.25
    with pytest.raises(ConfigError, match=r"^federation\.strategy: .* must be a subclass of server\.strategies"):
        build_strategy(ref(code_dir, "strategies", "NotAStrategy"), server_lr=1.0, code_dir=str(code_dir))
    with pytest.raises(ConfigError, match=r"^federation\.strategy: .*NoApply\(server_lr=1\.0\) failed: TypeError"):
        build_strategy(ref(code_dir, "strategies", "NoApply"), server_lr=1.0, code_dir=str(code_dir))


def test_a_client_runs_only_the_user_code_it_trusts(code_dir):
    reference = ref(code_dir, "models", "make")
    scenario = Scenario.from_dict({"name": "u", "code_dir": str(code_dir), "model": {"name": reference}})
    config = TaskConfig.from_json(TaskConfig.from_scenario(scenario, VOCAB).to_json())  # as a client receives it
    global_model = build(code_dir, reference).state_dict()
    with pytest.raises(ConfigError, match=rf"^model\.name: .*does not trust \(start it with --trust-code {reference}"):
        LocalTrainer().evaluate(_shard(), config, global_model)
    metrics = LocalTrainer(trusted_code=[reference]).evaluate(_shard(), config, global_model)
    assert 0.0 <= metrics["accuracy"] <= 1.0


def _shard() -> Shard:
    return Shard(np.array([[1, 2, 0], [3, 0, 0]], dtype=np.int32), np.array([1.0, 0.0], dtype=np.float32))
