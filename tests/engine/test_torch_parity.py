"""Parity with PyTorch (the pinned CPU build in the test extra): outputs and gradients of every
layer, loss and optimizer agree within 1e-5 relative in float64."""
from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import pytest

import fedgrad as fg
from fedgrad import nn

torch = pytest.importorskip("torch", reason="torch (test extra, pinned torch==2.13.0) is not installed")

RTOL, ATOL = 1e-5, 1e-8
#: torch is imported at run time (importorskip), so torch objects are typed Any here.
ModuleT = TypeVar("ModuleT", bound=nn.Module)
R = np.random.default_rng(11)


def close(ours, theirs) -> None:
    ours = ours.numpy() if isinstance(ours, fg.Tensor) else np.asarray(ours)
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=ATOL)


def pair(array: np.ndarray) -> tuple[fg.Tensor, Any]:
    """The same float64 values as a fedgrad and a torch leaf that both require grad."""
    return (
        fg.tensor(array, requires_grad=True, dtype=fg.float64),
        torch.tensor(array, dtype=torch.float64, requires_grad=True),
    )


def to_float64(module: ModuleT) -> ModuleT:
    for p in module.parameters():
        p.data = p.data.astype(np.float64)
    return module


def backward_both(ours: fg.Tensor, theirs: Any) -> None:
    upstream = R.standard_normal(ours.shape)
    ours.backward(fg.tensor(upstream, dtype=fg.float64))
    theirs.backward(torch.tensor(upstream))


def check_outputs(out: fg.Tensor, tout: Any, *inputs: tuple[fg.Tensor, Any]) -> None:
    """The two outputs agree, and so do the gradients that one random upstream gradient, sent back through
    both, gives each (fedgrad, torch) input pair."""
    close(out, tout)
    backward_both(out, tout)
    for ours, theirs in inputs:
        close(ours.grad, theirs.grad)


def check_loss(loss: fg.Tensor, tloss: Any, *inputs: tuple[fg.Tensor, Any]) -> None:
    """The two losses agree, and so do the gradients they backpropagate to each (fedgrad, torch) input pair."""
    close(loss, tloss)
    loss.backward()
    tloss.backward()
    for ours, theirs in inputs:
        close(ours.grad, theirs.grad)


def test_linear_and_mlp():
    tmodel = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3),
                                 torch.nn.Tanh()).double()
    model = to_float64(nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3), nn.Tanh()))
    model.load_state_dict({k: v.numpy() for k, v in tmodel.state_dict().items()})
    x, tx = pair(R.standard_normal((4, 5)))
    out, tout = model(x), tmodel(tx)
    check_outputs(out, tout, (x, tx))
    for (name, p), (tname, tp) in zip(model.named_parameters(), tmodel.named_parameters(), strict=True):
        assert name == tname
        close(p.grad, tp.grad)


def test_sigmoid_layer_and_softmaxes():
    x, tx = pair(R.standard_normal((3, 6)) * 4)
    out = nn.Sigmoid()(x) + x.softmax(axis=1) * x.log_softmax(axis=0)
    tout = torch.sigmoid(tx) + torch.softmax(tx, 1) * torch.log_softmax(tx, 0)
    check_outputs(out, tout, (x, tx))


@pytest.mark.parametrize("padding_idx", [None, 3])
def test_embedding(padding_idx):
    temb = torch.nn.Embedding(6, 4, padding_idx=padding_idx).double()
    emb = to_float64(nn.Embedding(6, 4, padding_idx=padding_idx))
    emb.load_state_dict({"weight": temb.weight.detach().numpy()})
    ids = np.array([[0, 3, 5, 3], [1, 1, 3, 2]])
    out, tout = emb(ids), temb(torch.from_numpy(ids))
    check_outputs(out, tout, (emb.weight, temb.weight))


@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_embedding_bag_with_padding(mode):
    tbag = torch.nn.EmbeddingBag(7, 3, mode=mode, padding_idx=0).double()
    with torch.no_grad():
        tbag.weight[0] = 0.5  # a non-zero padding row must still be skipped
    bag = to_float64(nn.EmbeddingBag(7, 3, mode=mode, padding_idx=0))
    bag.load_state_dict({"weight": tbag.weight.detach().numpy()})
    ids = np.array([[4, 2, 2, 0, 0], [1, 6, 5, 3, 4], [0, 0, 0, 0, 0], [0, 5, 0, 5, 0]])
    out, tout = bag(ids), tbag(torch.from_numpy(ids))
    check_outputs(out, tout, (bag.weight, tbag.weight))


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_cell(nonlinearity):
    tcell = torch.nn.RNNCell(3, 4, nonlinearity=nonlinearity).double()
    cell = to_float64(nn.RNNCell(3, 4, nonlinearity=nonlinearity))
    cell.load_state_dict(fused_state(tcell))
    xs, txs = pair(R.standard_normal((5, 2, 3)))
    h, th = None, None
    for t in range(5):
        h = cell(xs[t], h)
        th = tcell(txs[t], th)
    assert h is not None
    close(h, th)
    backward_both(h, th)
    close(xs.grad, txs.grad)
    check_fused_grads(cell, tcell)


def fused_state(tcell: Any, prefix: str = "", suffix: str = "") -> dict[str, np.ndarray]:
    """PyTorch's (weight_ih, weight_hh, bias_ih, bias_hh) as fedgrad's fused (weight, bias)."""
    get = lambda name: getattr(tcell, name + suffix).detach().numpy()  # noqa: E731
    return {
        prefix + "weight": np.concatenate([get("weight_ih"), get("weight_hh")], axis=1),
        prefix + "bias": get("bias_ih") + get("bias_hh"),
    }


def check_fused_grads(cell: nn.Module, tcell: Any, prefix: str = "", suffix: str = "") -> None:
    params = dict(cell.named_parameters())
    grad = lambda name: getattr(tcell, name + suffix).grad.numpy()  # noqa: E731
    close(params[prefix + "weight"].grad, np.concatenate([grad("weight_ih"), grad("weight_hh")], axis=1))
    close(params[prefix + "bias"].grad, grad("bias_ih"))
    close(params[prefix + "bias"].grad, grad("bias_hh"))


def test_lstm_cell_unrolled():
    tcell = torch.nn.LSTMCell(3, 5).double()
    cell = to_float64(nn.LSTMCell(3, 5))
    cell.load_state_dict(fused_state(tcell))
    xs, txs = pair(R.standard_normal((6, 2, 3)))
    h0, th0 = pair(R.standard_normal((2, 5)))
    c0, tc0 = pair(R.standard_normal((2, 5)))
    state, tstate = (h0, c0), (th0, tc0)
    for t in range(6):
        state, tstate = cell(xs[t], state), tcell(txs[t], tstate)
    out = state[0] * state[1]
    tout = tstate[0] * tstate[1]
    check_outputs(out, tout, (xs, txs), (h0, th0), (c0, tc0))
    check_fused_grads(cell, tcell)


@pytest.mark.parametrize("batch_first", [False, True])
def test_lstm_two_layers(batch_first):
    tlstm = torch.nn.LSTM(3, 4, num_layers=2, batch_first=batch_first).double()
    lstm = to_float64(nn.LSTM(3, 4, num_layers=2, batch_first=batch_first))
    state = {}
    for k in range(2):
        state.update(fused_state(tlstm, prefix=f"cells.{k}.", suffix=f"_l{k}"))
    lstm.load_state_dict(state)
    shape = (2, 5, 3) if batch_first else (5, 2, 3)
    x, tx = pair(R.standard_normal(shape))
    h0, th0 = pair(R.standard_normal((2, 2, 4)))
    c0, tc0 = pair(R.standard_normal((2, 2, 4)))
    out, (h, c) = lstm(x, (h0, c0))
    tout, (th, tc) = tlstm(tx, (th0, tc0))
    close(out, tout)
    close(h, th)
    close(c, tc)
    total = out.sum() * 0.5 + (h * c).sum()
    ttotal = tout.sum() * 0.5 + (th * tc).sum()
    total.backward()
    ttotal.backward()
    for ours, theirs in [(x, tx), (h0, th0), (c0, tc0)]:
        close(ours.grad, theirs.grad)
    for k in range(2):
        check_fused_grads(lstm, tlstm, prefix=f"cells.{k}.", suffix=f"_l{k}")


def test_cross_entropy_respects_upstream_gradient():
    x, tx = pair(R.standard_normal((6, 4)) * 3)
    targets = np.array([0, 3, 1, 1, 2, 0])
    loss = nn.CrossEntropyLoss()(x, targets) * 2.5
    tloss = torch.nn.CrossEntropyLoss()(tx, torch.from_numpy(targets)) * 2.5
    check_loss(loss, tloss, (x, tx))


def test_mse_loss():
    x, tx = pair(R.standard_normal((5, 3)))
    y, ty = pair(R.standard_normal((5, 3)))
    loss, tloss = nn.MSELoss()(x, y) * -1.5, torch.nn.MSELoss()(tx, ty) * -1.5
    check_loss(loss, tloss, (x, tx), (y, ty))


def test_bce_with_logits_is_stable_at_extremes():
    logits = np.array([-200.0, -30.0, -1.0, 0.0, 2.0, 40.0, 300.0])
    x, tx = pair(logits)
    y = R.uniform(0, 1, logits.shape)
    loss = nn.BCEWithLogitsLoss()(x, y) * 3
    tloss = torch.nn.BCEWithLogitsLoss()(tx, torch.tensor(y)) * 3
    check_loss(loss, tloss, (x, tx))


def test_dropout_in_eval_mode_is_identity_like_torch():
    x, tx = pair(R.standard_normal((3, 3)))
    close(nn.Dropout(0.3).eval()(x), torch.nn.Dropout(0.3).eval()(tx))


@pytest.mark.parametrize(
    "make, tmake",
    [
        (lambda p: fg.optim.SGD(p, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
        (
            lambda p: fg.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.01),
            lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.01),
        ),
        (lambda p: fg.optim.Adam(p, lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
        (
            lambda p: fg.optim.Adam(p, lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
            lambda p: torch.optim.Adam(p, lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
        ),
    ],
    ids=["sgd", "sgd-momentum-wd", "adam", "adam-wd"],
)
def test_optimizers_match_over_several_steps(make, tmake):
    tmodel = torch.nn.Linear(4, 2).double()
    model = to_float64(nn.Linear(4, 2))
    model.load_state_dict({k: v.numpy() for k, v in tmodel.state_dict().items()})
    opt, topt = make(model.parameters()), tmake(tmodel.parameters())
    x = R.standard_normal((8, 4))
    for _ in range(5):
        opt.zero_grad()
        topt.zero_grad()
        ((model(fg.tensor(x, dtype=fg.float64)) ** 2).mean()).backward()
        ((tmodel(torch.tensor(x)) ** 2).mean()).backward()
        opt.step()
        topt.step()
    close(model.weight, tmodel.weight)
    close(model.bias, tmodel.bias)
