"""The spam models: shapes, seeded initialisation, their losses, and unknown words."""
from __future__ import annotations

import numpy as np
import pytest

import fedgrad as fg
from fedgrad.errors import ConfigError
from fedgrad.models import BAG_INIT, MODEL_NAMES, build_model, model_from_config
from fedgrad.scenario import ModelConfig, Scenario

IDS = np.array([[2, 3, 4, 0, 0], [5, 6, 0, 0, 0], [7, 8, 9, 10, 11]], dtype=np.int32)
LABELS = np.array([1.0, 0.0, 1.0], dtype=np.float32)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_scores_have_one_value_per_email(name):
    model = build_model(name, 20, seed=0)
    scores = model(IDS)
    assert scores.shape == (3,)
    loss = model.loss_fn(scores, fg.Tensor(LABELS))
    assert loss.shape == () and np.isfinite(loss.item())
    proba = model.predict_proba(scores).numpy()
    assert np.all((proba > 0) & (proba < 1))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_same_seed_same_weights(name):
    first, again, other = (build_model(name, 50, seed=s).state_dict() for s in (3, 3, 4))
    assert first.keys() == again.keys()
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert any(not np.array_equal(first[k], other[k]) for k in first)


@pytest.mark.parametrize("name", ["book", "logreg"])
def test_bag_models_start_small_with_zero_padding(name):
    weight = build_model(name, 1000, seed=0).state_dict()["embedding.weight"]
    assert weight.shape == (1000, 1)
    assert np.all(weight[0] == 0.0)
    assert 0 < np.abs(weight).max() <= BAG_INIT


def test_book_model_is_the_books_sum_sigmoid_and_summed_mse():
    model = build_model("book", 12, seed=0)
    weights = np.linspace(-1, 1, 12, dtype=np.float32)[:, None]
    weights[0] = 0
    model.load_state_dict({"embedding.weight": weights})
    scores = model(IDS[:, :5] % 12)
    expected_scores = weights[IDS[:, :5] % 12, 0].sum(axis=1)
    np.testing.assert_allclose(scores.numpy(), expected_scores, rtol=1e-6)
    proba = 1 / (1 + np.exp(-expected_scores))
    loss = model.loss_fn(scores, fg.Tensor(LABELS)).item()
    assert loss == pytest.approx(float(((proba - LABELS) ** 2).sum()), rel=1e-5)  # summed, not averaged
    assert model.loss_reduction == "sum"


def test_logreg_is_bce_on_sum_plus_bias():
    model = build_model("logreg", 12, seed=0)
    model.load_state_dict({"embedding.weight": np.full((12, 1), 0.5, dtype=np.float32),
                           "bias": np.array([-1.0], dtype=np.float32)})
    scores = model(IDS % 12)
    counts = (IDS % 12 != 0).sum(axis=1)
    np.testing.assert_allclose(scores.numpy(), 0.5 * counts - 1.0, rtol=1e-6)
    x = 0.5 * counts - 1.0
    bce = np.mean(np.log1p(np.exp(-x)) * LABELS + np.log1p(np.exp(x)) * (1 - LABELS))
    assert model.loss_fn(scores, fg.Tensor(LABELS)).item() == pytest.approx(bce, rel=1e-5)
    assert model.loss_reduction == "mean"


@pytest.mark.parametrize("name", ["book", "logreg"])
def test_unknown_words_add_nothing_to_bag_scores(name):
    model = build_model(name, 20, seed=0)
    with_unknown = np.array([[2, 1, 3, 1, 1]], dtype=np.int32)
    without = np.array([[2, 3, 0, 0, 0]], dtype=np.int32)
    assert model(with_unknown).item() == pytest.approx(model(without).item())
    assert model(fg.Tensor(with_unknown)).item() == pytest.approx(model(without).item())


def test_mlp_uses_hidden_from_config():
    model = model_from_config(ModelConfig(name="mlp", hidden=7), 30, seed=0)
    assert model.state_dict()["embedding.weight"].shape == (30, 7)
    assert model.state_dict()["out.weight"].shape == (1, 7)
    book = model_from_config(ModelConfig(name="book", hidden=7), 30, seed=0)
    assert set(book.state_dict()) == {"embedding.weight"}


def test_bad_model_requests():
    with pytest.raises(ConfigError, match=r"model.name"):
        build_model("cnn", 10)
    with pytest.raises(ConfigError, match="vocabulary has 1 entries"):
        build_model("book", 1)


def test_scenario_offers_exactly_the_models_this_module_builds():
    for name in MODEL_NAMES:
        assert Scenario.from_dict({"name": "s", "model": {"name": name}}).model.name == name
    with pytest.raises(ConfigError, match=r"^model\.name: must be one of book, logreg, mlp, lstm or"):
        Scenario.from_dict({"name": "s", "model": {"name": "cnn"}})


def test_lstm_uses_hidden_and_max_len_from_config():
    model = model_from_config(ModelConfig(name="lstm", hidden=5, max_len=3), 30, seed=0)
    state = model.state_dict()
    assert state["embedding.weight"].shape == (30, 5)
    assert state["lstm.cells.0.weight"].shape == (20, 10)
    long = np.array([[2, 3, 4, 5, 6]], dtype=np.int32)
    assert model(long).item() == pytest.approx(model(long[:, :3]).item())  # words past max_len are not read
    assert model(long).item() != pytest.approx(model(long[:, :2]).item())


def test_lstm_score_ignores_padding_and_batch_neighbours():
    model = build_model("lstm", 20, seed=0, hidden=4, max_len=8)
    alone = model(IDS[1:2, :2]).item()
    assert model(IDS).numpy()[1] == pytest.approx(alone, abs=1e-6)  # padded to 5 beside longer emails


def test_lstm_model_matches_torch_forward_and_gradients():
    """The lstm model against the same computation in PyTorch: masked mean of LSTM outputs over the words
    present, then a linear logit, trained with binary cross-entropy."""
    torch = pytest.importorskip("torch")
    model = build_model("lstm", 20, seed=1, hidden=4, max_len=4)
    state = {name: torch.tensor(value, dtype=torch.float64) for name, value in model.state_dict().items()}
    ids = np.array([[2, 3, 4, 5, 6], [7, 8, 0, 0, 0], [9, 0, 0, 0, 0]], dtype=np.int32)
    labels = np.array([1.0, 0.0, 1.0], dtype=np.float32)
    weights = {name: tensor.clone().requires_grad_(True) for name, tensor in state.items()}
    kept = torch.tensor(ids[:, :4], dtype=torch.long)
    steps = weights["embedding.weight"][kept]                                     # [B, T, H]
    hidden = weights["lstm.cells.0.weight"].shape[0] // 4
    h = c = torch.zeros(3, hidden, dtype=torch.float64)
    outputs = []
    for t in range(kept.shape[1]):
        gates = torch.cat([steps[:, t], h], dim=1) @ weights["lstm.cells.0.weight"].T + weights["lstm.cells.0.bias"]
        i, f, g, o = gates.split(hidden, dim=1)
        c = f.sigmoid() * c + i.sigmoid() * g.tanh()
        h = o.sigmoid() * c.tanh()
        outputs.append(h)
    mask = (kept != 0).double()[:, :, None]
    pooled = (torch.stack(outputs, dim=1) * mask).sum(dim=1) / mask.sum(dim=1)
    tscores = (pooled @ weights["out.weight"].T + weights["out.bias"]).reshape(-1)
    torch.nn.functional.binary_cross_entropy_with_logits(tscores, torch.tensor(labels, dtype=torch.float64)).backward()

    scores = model(ids)
    model.loss_fn(scores, fg.Tensor(labels)).backward()
    assert np.allclose(scores.numpy(), tscores.detach().numpy(), atol=1e-5)
    for name, param in model.named_parameters():
        assert np.allclose(param.grad.numpy(), weights[name].grad.numpy(), atol=1e-5), name
