"""Modules, state dicts, layers' behaviour, optimizers and the device seam."""
from __future__ import annotations

import numpy as np
import pytest

import fedgrad as fg
from fedgrad import backend, nn
from fedgrad.errors import FedgradError


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.EmbeddingBag(10, 4, mode="mean")
        self.head = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1))
        self.scale = nn.Parameter(np.ones(1))
        self.not_a_param = fg.tensor([1.0])

    def forward(self, ids):
        return self.head(self.embed(ids)) * self.scale


def first_linear(model: TwoLayer) -> nn.Linear:
    layer = model.head[0]
    assert isinstance(layer, nn.Linear)
    return layer


def test_module_registers_parameters_and_submodules_in_order():
    model = TwoLayer()
    names = [name for name, _ in model.named_parameters()]
    assert names == ["scale", "embed.weight", "head.0.weight", "head.0.bias", "head.2.weight", "head.2.bias"]
    assert all(p.requires_grad for p in model.parameters())
    model.scale = None  # type: ignore[assignment]  # unsetting a parameter, on purpose
    assert "scale" not in dict(model.named_parameters())


def test_shared_parameter_listed_once():
    shared = nn.Linear(2, 2)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert len(list(model.parameters())) == 2


def test_forgetting_super_init_is_a_clear_error():
    class Broken(nn.Module):
        def __init__(self):
            self.w = nn.Parameter([1.0])

    with pytest.raises(AttributeError, match="super"):
        Broken()


def test_state_dict_is_host_copies_and_round_trips():
    fg.manual_seed(0)
    model = TwoLayer()
    state = model.state_dict()
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in state.values())
    weight = first_linear(model).weight
    weight.data += 1.0
    assert not np.allclose(state["head.0.weight"], weight.numpy())
    before = id(weight.data)
    model.load_state_dict(state)
    np.testing.assert_array_equal(weight.numpy(), state["head.0.weight"])
    assert id(weight.data) == before  # loaded in place: optimizers keep their references


def test_load_state_dict_rejects_mismatches():
    model = TwoLayer()
    state = model.state_dict()
    with pytest.raises(nn.StateDictError, match="missing"):
        model.load_state_dict({k: v for k, v in state.items() if k != "scale"})
    with pytest.raises(nn.StateDictError, match="unexpected"):
        model.load_state_dict({**state, "extra": np.zeros(1)})
    with pytest.raises(nn.StateDictError, match="shape"):
        model.load_state_dict({**state, "scale": np.zeros(2)})
    assert issubclass(nn.StateDictError, FedgradError)
    model.load_state_dict({"scale": np.full(1, 2.0)}, strict=False)
    assert model.scale.item() == 2.0


def test_train_eval_and_dropout():
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5))
    assert model.training and model[1].training
    model.eval()
    assert not model[1].training
    x = fg.randn(4, 3)
    np.testing.assert_array_equal(model(x).numpy(), model(x).numpy())
    model.train()
    fg.manual_seed(0)
    dropped = nn.functional.dropout(fg.ones(10_000), 0.25, training=True).numpy()
    assert set(np.unique(dropped)) <= {0.0, np.float32(1 / 0.75)}
    assert abs(dropped.mean() - 1.0) < 0.05
    with pytest.raises(ValueError):
        nn.Dropout(1.0)


def test_zero_grad_and_to_cpu():
    model = TwoLayer()
    model(np.array([[1, 2, 0]])).sum().backward()
    assert first_linear(model).weight.grad is not None
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    assert model.to("cpu") is model
    assert model.scale.device == "cpu"


def test_embedding_bag_excludes_padding_from_sum_and_mean():
    bag = nn.EmbeddingBag(5, 2, mode="mean")
    bag.weight.data[...] = np.arange(10, dtype=np.float32).reshape(5, 2)  # padding row 0 non-zero
    out = bag(np.array([[1, 3, 0, 0], [0, 0, 0, 0]])).numpy()
    np.testing.assert_allclose(out, [[4.0, 5.0], [0.0, 0.0]])
    summed = nn.functional.embedding_bag(np.array([[1, 3, 0]]), bag.weight, mode="sum", padding_idx=0)
    np.testing.assert_allclose(summed.numpy(), [[8.0, 10.0]])


def test_layer_initialisation_zeroes_padding_rows():
    assert not nn.Embedding(6, 3, padding_idx=2).weight.numpy()[2].any()
    assert not nn.EmbeddingBag(6, 3).weight.numpy()[0].any()


def test_lstm_shapes():
    lstm = nn.LSTM(3, 5, num_layers=2)
    out, (h, c) = lstm(fg.randn(7, 2, 3))
    assert out.shape == (7, 2, 5) and h.shape == (2, 2, 5) and c.shape == (2, 2, 5)
    assert [n for n, _ in lstm.named_parameters()] == [
        "cells.0.weight", "cells.0.bias", "cells.1.weight", "cells.1.bias"]


def test_sgd_momentum_and_weight_decay_follow_pytorch_rule():
    w = nn.Parameter([1.0, -1.0])
    opt = fg.optim.SGD([w], lr=0.1, momentum=0.9, weight_decay=0.5)
    for _ in range(2):
        opt.zero_grad()
        (w * w).sum().backward()
        opt.step()
    # step 1: g = 2w + 0.5w = 2.5w -> buf = 2.5; w = 1 - 0.25 = 0.75
    # step 2: g = 2.5 * 0.75 = 1.875; buf = 0.9 * 2.5 + 1.875 = 4.125; w = 0.75 - 0.4125
    np.testing.assert_allclose(w.numpy(), [0.3375, -0.3375], rtol=1e-6)
    state = opt.state_dict()
    assert state["defaults"]["momentum"] == 0.9
    np.testing.assert_allclose(state["state"][0]["momentum_buffer"], [4.125, -4.125], rtol=1e-6)


def test_optimizer_skips_parameters_without_gradients():
    used, unused = nn.Parameter([1.0]), nn.Parameter([1.0])
    opt = fg.optim.Adam([used, unused], lr=0.1)
    (used * 2).sum().backward()
    opt.step()
    assert used.item() < 1.0 and unused.item() == 1.0
    other = fg.optim.Adam([nn.Parameter([1.0]), nn.Parameter([1.0])], lr=0.1)
    other.load_state_dict(opt.state_dict())
    assert other.state[0]["step"] == 1


def test_device_strings_and_missing_cuda():
    assert backend.parse_device(None) == "cpu"
    assert backend.parse_device("CUDA") == "cuda:0"
    assert backend.parse_device("cuda:1") == "cuda:1"
    with pytest.raises(backend.DeviceError, match="unknown device"):
        backend.parse_device("tpu")
    assert backend.get_xp("cpu") is np
    try:
        backend._load_cupy()  # raises DeviceError without cupy or without a GPU
        pytest.skip("a GPU is present: the missing-GPU error path cannot be exercised here")
    except backend.DeviceError:
        pass
    with pytest.raises(fg.DeviceError, match="cuda"):
        fg.zeros(2, device="cuda")
    with pytest.raises(FedgradError):
        nn.Linear(2, 2).to("cuda")
